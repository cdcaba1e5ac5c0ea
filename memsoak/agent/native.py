"""The native window: memray's in-process tracker, with native stacks, around a stretch of requests.

tracemalloc sees only Python's allocators; a leak in a C or Rust extension grows RSS alone. For a
short window memray (Linux) hooks malloc and friends in this process and records a hybrid stack
(Python and native frames) for each allocation; at the end of the window what is still allocated
is what the window leaked. The answer is that, grouped by stack, as JSON: sizes, counts and frames,
with this process' RSS at both ends (the share of the growth that the sites explain is analysis').

The capture lives in a private directory made here (mkdtemp: mode 0700, a name no request gives),
in memray's format of all allocations (about 5 KB per request of a Flask app with native
stacks), is read and then removed; a capture over `max_bytes` is not read. Not the aggregated
format, smaller as it is: in a target under gevent its leaked records counted 33 blocks where 300
requests had each left one (the sizes were right), and the count is what tells a per-request leak
from one block kept once. The tracker stops by itself after `max_seconds`, so a window nobody
closes does not slow the target for good.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Container
from typing import Any

from memsoak.agent import tracing
from memsoak.agent.shared_objects import find_objects

MAX_CAPTURE_BYTES = 64 * 1024 * 1024
MAX_STACK = 64  # hybrid frames kept per allocation, innermost first
MAX_STACKS = 500  # distinct stacks sent, most bytes first
UNKNOWN = "<unknown>"  # memray's name for what it could not resolve
# Where memsoak's own code lives: its frames (the agent, the launcher) are no user's.
_OWN_FILES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")


def unavailable(
    version: tuple[int, int] = sys.version_info[:2], modules: Container[str] = sys.modules
) -> str | None:
    """Why the window cannot run in this process, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"the native window needs Linux (memray); this target runs on {sys.platform}"
    try:
        import memray  # noqa: F401
    except ImportError:
        return "the native window needs memray, which is not installed in the target"
    if tuple(version) >= (3, 12) and "greenlet" in modules:
        # Cores of both: memray's stack tracker read a freed frame (PyFrame_GetLasti) as a new
        # greenlet started, from a malloc that tracemalloc made. On 3.12.1 most windows of 300
        # requests of a Flask app did; on 3.13.0 every window of the Django target. Never seen
        # on 3.11, nor without greenlets. Open upstream crashes of memray with greenlets:
        # bloomberg/memray#699.
        return (
            f"the native window is not recorded in a CPython {version[0]}.{version[1]} target with "
            "greenlets (gevent): memray's greenlet support, which it calls experimental, crashed "
            "such targets with SIGSEGV (CPython 3.12.1 and 3.13.0, memray 1.20); it runs under "
            "uvicorn, or on 3.11"
        )
    return None


class NativeWindow:
    """One window: `start()`, some requests, `stop()` -> the JSON answer. Not reusable."""

    def __init__(
        self,
        requests_served: Callable[[], int],
        max_seconds: float,
        max_bytes: int = MAX_CAPTURE_BYTES,
    ) -> None:
        self._requests_served = requests_served
        self._max_seconds = max_seconds
        self._max_bytes = max_bytes
        self._tracker: Any = None
        self._dir: str | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._stopped_by_timer = False
        self._start: tuple[int, int, float] = (0, 0, 0.0)  # requests, RSS, monotonic time

    def start(self) -> dict[str, Any]:
        why = unavailable()
        if why is not None:
            raise RuntimeError(why)
        import memray

        self._dir = tempfile.mkdtemp(prefix="memsoak-native-")
        path = os.path.join(self._dir, "window.bin")
        tracker = memray.Tracker(
            path,
            native_traces=True,
            follow_fork=False,  # the agent's forked snapshot children are none of the window's
            file_format=memray.FileFormat.ALL_ALLOCATIONS,
        )
        try:
            tracker.__enter__()
        except Exception:  # noqa: BLE001 - memray refuses (another tracker active, say): say so
            self._remove()
            raise RuntimeError("memray's tracker did not start (is another one active?)") from None
        self._tracker = tracker
        self._start = (self._requests_served(), tracing.current_rss(), time.monotonic())
        self._timer = threading.Timer(self._max_seconds, self._stop_tracker, kwargs={"timed_out": True})
        self._timer.daemon = True
        self._timer.start()
        return {"recording": True, "pid": os.getpid()}

    def _stop_tracker(self, timed_out: bool = False) -> None:
        with self._lock:
            tracker, self._tracker = self._tracker, None
            if tracker is None:
                return
            self._stopped_by_timer = timed_out
            self._end = (self._requests_served(), tracing.current_rss(), time.monotonic())
            tracker.__exit__(None, None, None)

    def stop(self) -> dict[str, Any]:
        """Stop recording, read what the window left allocated, remove the capture."""
        if self._timer is not None:
            self._timer.cancel()
        self._stop_tracker()
        try:
            return self._answer()
        finally:
            self._remove()

    def close(self) -> None:
        """Stop and discard (a window replaced by a new one, an agent shutting down)."""
        if self._timer is not None:
            self._timer.cancel()
        self._stop_tracker()
        self._remove()

    def _answer(self) -> dict[str, Any]:
        from memray import FileReader

        assert self._dir is not None
        path = os.path.join(self._dir, "window.bin")
        requests0, rss0, t0 = self._start
        requests1, rss1, t1 = self._end
        answer: dict[str, Any] = {
            "pid": os.getpid(),
            "requests": requests1 - requests0,
            "rss_start": rss0,
            "rss_end": rss1,
            "seconds": round(t1 - t0, 3),
            "timed_out": self._stopped_by_timer,
            "library_files": [*tracing.library_files(), _OWN_FILES],
            "stacks": [],
        }
        size = os.path.getsize(path)
        answer["capture_bytes"] = size
        if size > self._max_bytes:
            answer["note"] = f"capture of {size:,} bytes is over the limit of {self._max_bytes:,}: not read"
            return answer
        grouped: dict[tuple[tuple[str, str, int], ...], list[int]] = {}
        with FileReader(path) as reader:
            for record in reader.get_leaked_allocation_records(merge_threads=True):
                stack = tuple(
                    (str(function), str(file), int(line))
                    for function, file, line in record.hybrid_stack_trace(max_stacks=MAX_STACK)
                )
                totals = grouped.setdefault(stack, [0, 0])
                totals[0] += record.size
                totals[1] += record.n_allocations
        ranked = sorted(grouped.items(), key=lambda item: -item[1][0])[:MAX_STACKS]
        objects = find_objects(
            function
            for stack, _totals in ranked
            for function, file, _line in stack
            if file == UNKNOWN and function != UNKNOWN
        )
        answer["stacks"] = [
            {
                "bytes": size,
                "count": count,
                "frames": [
                    [function, objects.get(function, file) if file == UNKNOWN else file, line]
                    for function, file, line in stack
                ],
            }
            for stack, (size, count) in ranked
        ]
        answer["leaked_bytes"] = sum(size for size, _ in grouped.values())
        return answer

    def _remove(self) -> None:
        directory, self._dir = self._dir, None
        if directory is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(directory)


class BadRequest(ValueError):
    """A control request's body that does not fit (answered 400)."""


class NativeControl:
    """The agent's `native/start` and `native/stop`: at most one window at a time."""

    def __init__(self, requests_served: Callable[[], int]) -> None:
        self._requests_served = requests_served
        self._window: NativeWindow | None = None

    def start(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"max_seconds": 0..600}`."""
        max_seconds = body.get("max_seconds", 60.0)
        if type(max_seconds) not in (int, float) or not 0 < max_seconds <= 600:
            raise BadRequest("expected {'max_seconds': 0..600}")
        if self._window is not None:
            self._window.close()
        window = NativeWindow(self._requests_served, float(max_seconds))
        answer = window.start()  # RuntimeError (409) says why it cannot
        self._window = window
        return answer

    def stop(self, _body: dict[str, Any]) -> dict[str, Any]:
        window, self._window = self._window, None
        if window is None:
            raise RuntimeError("no native window is recording")
        return {"windows": [window.stop()]}
