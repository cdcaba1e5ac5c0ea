"""A target that leaks until it runs out of memory and dies, for the fault tests.

Per request: `GET /` keeps 256 KiB more (line 60). At import it caps its own address space with
RLIMIT_AS (the `ulimit -v` limit) at its current size plus MEMSOAK_FAULT_HEADROOM_MB (default
64 MiB), so after a few hundred requests an allocation fails.

Under RLIMIT_AS the kernel refuses the allocation (Python raises MemoryError) rather than killing
the process; a cgroup memory limit would have the kernel's OOM killer send SIGKILL instead. Tests
cannot make cgroups here, so this target ends itself the way the OOM killer would: it writes the
error to stderr and sends itself SIGKILL. What memsoak sees is the same: a process gone without
a word on the wire, killed by signal 9, its last stderr lines saying why.

glibc gives each new thread that allocates a malloc arena of its own, 64 MiB of address space at
once, so under RLIMIT_AS the request the target dies at would depend on which threads (the
agent's, gevent's) happened to allocate first: between 340 and 600 requests were seen. One arena
(M_ARENA_MAX, set before the limit) makes it the same request every run.

Expected verdict: leak
Planted line: oom_leak.py:60
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from collections.abc import Iterable
from typing import Any

import psutil

_kept: list[bytearray] = []
HEADROOM = int(os.environ.get("MEMSOAK_FAULT_HEADROOM_MB", "64")) << 20

M_ARENA_MAX = -8  # glibc's malloc.h
ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)
_soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
_limit = psutil.Process().memory_info().vms + HEADROOM
resource.setrlimit(resource.RLIMIT_AS, (_limit, _hard))


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    try:
        _grow()
    except MemoryError:
        print(
            f"oom_leak: MemoryError after {len(_kept)} requests: RLIMIT_AS of {_limit >> 20} MiB reached; "
            "dying as the OOM killer would (SIGKILL)",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGKILL)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % len(_kept)]


def _grow() -> None:
    _kept.append(bytearray(256 * 1024))
