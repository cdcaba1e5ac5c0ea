"""A real C-extension leak: ujson 5.2.0 leaks what `default` returns when it needs `default` again.

Per request: `GET /?i=N` serialises a page of 10 orders with `ujson.dumps(..., default=encode)`:
`encode` turns each Order into a Price, which ujson hands to `encode` again to get a list. ujson
5.2.0 never releases the Price (ultrajson#523, fixed in 5.3.0 by #524): each request leaks 10
Prices with their detail dicts and lists, and no object the garbage collector tracks refers to
them. The line that
made them is `encode`'s, called from C.

Expected verdict: leak
Planted line: _orders.py:29
Retention kind: unreachable
Retention root: unreferenced targets.corpus._orders.Price
"""

from targets.corpus._orders import make_app
from targets.releases import load

app = make_app(load("ujson", "5.2.0"))
