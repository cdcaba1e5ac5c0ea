"""Processes that end with the process that started them, however it ends: SIGKILL and the OOM
killer included, when it runs no handler and no `finally`.

The kernel does it (Linux `prctl(PR_SET_PDEATHSIG)`): set in the child, it sends the child a
signal when its parent dies. Two things make that subtle. The signal comes when the parent
*thread* that forked the child ends, not the parent process: a child started from a short-lived
thread would be killed with that thread. So the processes `memsoak run` starts are started from
its main thread (`preexec` refuses any other); a forked snapshot child, which serves one request,
may go with the thread that handles it. And the setting is made in the child after the fork: a
parent that died in between is caught by comparing the parent's pid with the one expected.

A process `memsoak run` starts is also told who started it (`ENV_PID`), so it can notice by
itself where the kernel's signal is not to be had (another platform) and, for the Locust
master, where to write what it says once nobody reads its output (`ENV_LOG`): see
memsoak/locust/conductor.py.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Callable

# The conductor's pid, in the environment of the Locust processes `memsoak run` starts.
ENV_PID = "MEMSOAK_CONDUCTOR_PID"
# The file the conductor copies the Locust master's output to (its locust.log).
ENV_LOG = "MEMSOAK_CONDUCTOR_LOG"

_PR_SET_PDEATHSIG = 1


def _find_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Looked up here, in the parent: a child forked from a threaded process had better not
        # go through the dynamic loader, whose lock another thread may have held at the fork.
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _find_prctl()


def end_with_parent(signum: int, parent_pid: int) -> None:
    """In a child just forked by `parent_pid`: have the kernel send `signum` when the parent
    (the thread of it that forked) ends, and send it now when the parent already has. Nothing
    happens where the kernel cannot do it (not Linux)."""
    if _prctl is None or _prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        return
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)


def preexec(signum: int) -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `signum` when this process ends.
    Called in the parent, from its main thread (the thread the child's signal is tied to)."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("processes that end with memsoak are started from its main thread")
    parent_pid = os.getpid()

    def in_child() -> None:
        end_with_parent(signum, parent_pid)

    return in_child
