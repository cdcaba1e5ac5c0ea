"""The fixed twin of the shop's product page: pages are memoised in a bounded cache
(`functools.lru_cache(maxsize=200)`), which evicts its least recently used page past 200.

Per request: `GET /?i=N` renders a ~500-byte page for product N. The cache fills during warm-up
and then holds 200 pages: no growth with the request count.

Expected verdict: no-leak
"""

import functools

from django.http import HttpRequest, HttpResponse


@functools.lru_cache(maxsize=200)
def render_page(key: str) -> str:
    return f"<h1>Product {key}</h1>" + "<p>In stock.</p>" * 28


def product(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_page(request.GET.get("i", "0"))[:64])
