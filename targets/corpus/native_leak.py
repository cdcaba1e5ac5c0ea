"""A native leak: memory from libc's malloc through ctypes, written and never freed.

Per request: `GET /` mallocs 32 KB with libc through ctypes, fills it with memset (so the pages
are really resident) and keeps only the address as an integer in a list that it trims. Python's
allocators never see the block, so tracemalloc's traced memory stays flat while RSS grows by
32 KB per request. Nor does the native window see it: ctypes resolves `malloc` with dlsym and
calls it directly, past memray's hooks, so the report says the window explains almost none of the
growth and names no site (tests/test_native_window.py holds it to that).

Expected verdict: native-leak
"""

import ctypes
import ctypes.util

from flask import Flask

app = Flask(__name__)
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.memset.restype = ctypes.c_void_p
_libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
BLOCK = 32 * 1024
_last_blocks: list[int] = []


@app.route("/")
def index() -> str:
    address = _libc.malloc(BLOCK)
    _libc.memset(address, 0x5A, BLOCK)
    _last_blocks.append(address)
    del _last_blocks[:-10]  # only the addresses of the last few: nothing Python-side grows
    return "ok"
