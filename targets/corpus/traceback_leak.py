"""A C extension that leaks a traceback on its error path: one failed request kept whole.

Per request: `GET /?i=N` hands the payload to `tbleak.decode` (tests/cext/tbleak.c, built at
first use), a C decoder that takes an extra reference on the traceback of a failed parse and
never releases it. One request in two is malformed: its traceback stays alive, and with it the
frames it holds, the frames that called them (the app's view, Flask's, gevent's request handler)
and their locals: the request's WSGI environ, its headers. The memory shows up at the server's
lines (the environ dict), far from the cause; nothing the collector tracks refers to the
traceback. The line to blame is the app's call into the extension.

Expected verdict: leak
Planted line: _decoding.py:20
Retention kind: unreachable
Retention root: unreferenced traceback
"""

from targets.cext import load
from targets.corpus._decoding import make_app

app = make_app(load("tbleak").decode)
