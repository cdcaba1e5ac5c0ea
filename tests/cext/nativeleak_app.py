"""A native leak in a C extension: `GET /` calls `nativeleak.leak(16384)` (tests/cext/nativeleak.c),
which mallocs 16 KB with libc, writes it and never frees it.

Python's allocators never see the block: traced memory stays flat while RSS grows 16 KB a request.
memray's malloc hook does see it, so the native window names `nativeleak_leak` and this file's
`index` line that calls it.

Expected verdict: native-leak
Planted line: nativeleak_app.py:21 (16,384 bytes per request, native)
"""

import nativeleak
from flask import Flask

app = Flask(__name__)
BLOCK = 16 * 1024


@app.route("/")
def index() -> str:
    nativeleak.leak(BLOCK)  # planted
    return "ok"
