"""The ujson `default` leak's fixed twin: the same app on ujson 5.3.0, the release that fixed it.

Per request: `GET /?i=N` serialises a page of orders through two calls of `default` each, as in
ujson_default_leak; 5.3.0 releases the intermediate Prices. Nothing grows per request, but a
site at the `dumps` line fills once over the first thousand requests (some 700 blocks of about
57 bytes, in both twins, with no Python object to them: a free list inside CPython or ujson): a
plateau that 1,000 requests cannot tell from a slow leak, 3,000 can.

Expected verdict: no-leak
Requests: 3000
"""

from targets.corpus._orders import make_app
from targets.releases import load

app = make_app(load("ujson", "5.3.0"))
