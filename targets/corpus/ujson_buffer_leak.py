"""A real C-extension leak of raw memory: ujson 5.3.0 drops its output buffer when encoding fails.

Per request: `GET /?i=N` exports a report of ~11 KB with `ujson.dumps`. ujson encodes into a
64 KiB buffer on the stack and, when the output needs more, into one it takes with
PyObject_Malloc; in 5.3.0, an error after that (one export in eight holds a datetime, which
ujson cannot encode) returns without freeing it (fixed in 5.4.0). Each such request leaks a
256 KiB buffer, about 32 KB per request, that is no Python object at all. The line to blame is
the app's call into the extension.

Expected verdict: leak
Planted line: _export.py:20
Retention kind: raw
"""

from targets.corpus._export import make_app
from targets.releases import load

app = make_app(load("ujson", "5.3.0"))
