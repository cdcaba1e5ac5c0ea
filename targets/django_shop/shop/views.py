"""The shop's product page memoises every page it renders, in a module-level dict, forever.

Per request: `GET /?i=N` renders a ~500-byte product page for product N and keeps it in
`_rendered`, keyed by the query string; nothing is ever evicted, so every new product adds its
page for the life of the process (under WSGI and ASGI alike: Django runs this sync view in a
thread under ASGI).

Expected verdict: leak
Planted line: views.py:20
"""

from django.http import HttpRequest, HttpResponse

_rendered: dict[str, str] = {}


def product(request: HttpRequest) -> HttpResponse:
    key = request.GET.get("i", "0")
    if key not in _rendered:
        _rendered[key] = f"<h1>Product {key}</h1>" + "<p>In stock.</p>" * 28  # planted
    return HttpResponse(_rendered[key][:64])
