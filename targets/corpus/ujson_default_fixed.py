"""The ujson `default` leak's fixed twin: the same app on ujson 5.3.0, the release that fixed it.

Per request: `GET /?i=N` serialises an order through two calls of `default`, as in
ujson_default_leak; 5.3.0 releases the intermediate Price. Nothing grows per request.

Expected verdict: no-leak
"""

from targets.corpus._orders import make_app
from targets.releases import load

app = make_app(load("ujson", "5.3.0"))
