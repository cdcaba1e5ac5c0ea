"""Which shared object a native function is in, for the native window's frames that memray names
without a file (an extension built without debug information: ujson's `JSON_EncodeObject`).

memray gives names, not addresses, so the name is looked up again here, in this process: in each
object it has loaded (from /proc/self/maps), extension modules first, with dlsym; dladdr then says
which object the address is in (dlsym also searches an object's dependencies). Only exported
functions are found; a static one, or a stripped library's, stays without a file.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

MAX_LOOKUPS = 200  # distinct names per answer; the rest keep no file


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def loaded_objects(maps: str = "/proc/self/maps") -> list[str]:
    """The shared objects mapped into this process, Python extension modules first."""
    seen: dict[str, None] = {}
    try:
        with open(maps, encoding="utf-8", errors="replace") as file:
            for line in file:
                fields = line.split(maxsplit=5)  # the sixth, the path, is absent for anonymous memory
                path = fields[5].strip() if len(fields) == 6 else ""
                if path.startswith("/") and ".so" in os.path.basename(path):
                    seen.setdefault(path)
    except OSError:
        return []
    return sorted(seen, key=lambda p: (".cpython-" not in p and "/site-packages/" not in p, p))


def find_objects(functions: Iterable[str]) -> dict[str, str]:
    """{function: path of the shared object defining it} for those that can be found."""
    names = list(dict.fromkeys(functions))[:MAX_LOOKUPS]
    if not names:
        return {}
    try:
        libc = ctypes.CDLL(None)
        dladdr = libc.dladdr
    except (OSError, AttributeError):
        return {}
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    handles = []
    for path in loaded_objects():
        try:  # RTLD_NOLOAD: only what is already loaded, never a new load
            handles.append(ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY))
        except OSError:
            continue
    found: dict[str, str] = {}
    for name in names:
        for handle in handles:
            try:
                address = ctypes.cast(getattr(handle, name), ctypes.c_void_p).value
            except AttributeError:
                continue
            info = _DlInfo()
            if address and dladdr(address, ctypes.byref(info)) and info.dli_fname:
                found[name] = os.fsdecode(info.dli_fname)
                break
    return found
