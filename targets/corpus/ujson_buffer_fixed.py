"""The ujson buffer leak's fixed twin: the same export on ujson 5.4.0, which frees the buffer.

Per request: `GET /?i=N` exports an ~11 KB report; one in eight fails to encode and the buffer
is freed with the error. Nothing grows per request.

Expected verdict: no-leak
"""

from targets.corpus._export import make_app
from targets.releases import load

app = make_app(load("ujson", "5.4.0"))
