"""The traceback leak's fixed twin: the same app on the decoder without the extra reference.

Per request: `GET /?i=N` hands the payload to `tbleak.decode_fixed` (tests/cext/tbleak.c); one
request in two is malformed and its traceback is released with the exception, as it should be.
Nothing grows per request.

Expected verdict: no-leak
"""

from targets.cext import load
from targets.corpus._decoding import make_app

app = make_app(load("tbleak").decode_fixed)
