"""Snapshots built in a forked child: the target pauses only for the collection and the fork.

In a target traced since its start, a snapshot spent seconds building its document in-process:
every allocation it made (the trace list, the frame descriptions, the site rows, the JSON) was
itself traced at full depth, and the process served nothing meanwhile. A child forked after the
collection sees the traces exactly as they were at that instant (copy-on-write), reads them,
stops tracing in its own copy, and builds the document untraced, on another core, while the
target goes back to serving requests. The child hands back, through a pipe, the frame descriptions
it had to work out (the target keeps them, so the next child need not), then the document (or why
not), and exits without running any of the target's exit handlers.

The child touches nothing shared: not gevent's hub (its event loop's descriptor is the target's
too), not a socket, no file but the source files it reads for frame descriptions. The raw
`os.fork` is used even where gevent patched it, so gevent neither reinitialises its hub in the
child nor reaps it. Linux only (other platforms, or `MEMSOAK_SNAPSHOT_FORK=0`, keep the in-process
snapshot): fork is what the Linux servers memsoak drives are built on, and its copy-on-write
keeps the child's memory to the pages the target rewrites meanwhile plus the child's own work.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import struct
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from memsoak import lifeline
from memsoak.agent import tracing

ENV_SWITCH = "MEMSOAK_SNAPSHOT_FORK"
# A child that takes longer is stuck (a lock another thread held at the fork, say): it is killed
# and the snapshot fails, rather than the control request hanging.
CHILD_DEADLINE_S = 600.0
_LENGTH = struct.Struct("<Q")
_CHUNK = 1 << 20
# What the child's second message holds, by its first byte.
_DOCUMENT, _REFUSED = b"D", b"E"


class ChildFailed(Exception):
    """The child building the snapshot died, took too long, or refused (a document too large)."""


class DocumentTooLarge(ChildFailed):
    """The document is over the size the agent may send."""


def available() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork") and os.environ.get(ENV_SWITCH, "1") != "0"


def _unpatched(name: str) -> Callable[..., Any]:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("os"):
        return monkey.get_original("os", name)
    return getattr(os, name)


class ForkedWork:
    """A child forked with the target's state as it stands: `_work` runs in it and returns the
    frame descriptions it worked out and its answer (kind byte first). `document()` yields the
    answer's bytes as the child sends them; reading blocks the calling thread, cooperatively
    under gevent's patched `select`, while the process goes on serving others. `close()` ends
    the child either way."""

    what = "child"

    def _fork(self, work: Callable[[], tuple[bytes, bytes]], background: bool) -> None:
        """`background`: the load goes on meanwhile and the answer is not awaited by it, so the
        child runs at a lower priority and takes only the CPU the target and the load leave it."""
        self._read_end, write_end = os.pipe()
        parent_pid = os.getpid()
        try:
            self._pid = _unpatched("fork")()
        except OSError:
            os.close(self._read_end)
            os.close(write_end)
            raise
        if self._pid == 0:  # pragma: no cover - the child; coverage does not follow it
            _run_child(self._read_end, write_end, work, background, parent_pid)
        os.close(write_end)
        self._deadline = time.monotonic() + CHILD_DEADLINE_S
        self._done = False

    def document(self) -> Iterator[bytes]:
        """The answer's bytes, in chunks; ChildFailed before the first one if it cannot come."""
        descriptions = self._read_exact(self._read_length())
        if descriptions:
            tracing.remember_descriptions(descriptions)
        remaining = self._read_length()
        kind = self._read_exact(1)
        if kind == _REFUSED:
            raise DocumentTooLarge(self._read_exact(remaining - 1).decode(errors="replace"))
        remaining -= 1
        while remaining:
            chunk = self._read_some(min(remaining, _CHUNK))
            remaining -= len(chunk)
            yield chunk
        self._done = True

    def close(self) -> None:
        if self._pid <= 0:
            return
        if not self._done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        os.close(self._read_end)
        with contextlib.suppress(ChildProcessError):  # already reaped by someone's SIGCHLD handler
            _unpatched("waitpid")(self._pid, 0)
        self._pid = 0

    def _read_length(self) -> int:
        length: int = _LENGTH.unpack(self._read_exact(_LENGTH.size))[0]
        return length

    def _read_exact(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = self._read_some(size)
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _read_some(self, most: int) -> bytes:
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise ChildFailed(f"the {self.what} child took over {CHILD_DEADLINE_S:g} s and was killed")
            ready, _, _ = select.select([self._read_end], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self._read_end, most)
                if not chunk:
                    raise ChildFailed(f"the {self.what} child died before it finished (see the target's log)")
                return chunk


class ForkedSnapshot(ForkedWork):
    """One snapshot: taken (collection, then fork) when made; the child builds its document."""

    what = "snapshot"

    def __init__(self, min_site_bytes: int, max_document_bytes: int, *, background: bool = False) -> None:
        """`background`: the client was told the state is taken and its load goes on while the
        document comes."""
        started = time.perf_counter()
        rss_bytes = tracing.collect_before_snapshot()

        def work() -> tuple[bytes, bytes]:  # pragma: no cover - runs in the child
            forked_after_s = time.perf_counter() - started
            return _snapshot_in_child(min_site_bytes, max_document_bytes, rss_bytes, started, forked_after_s)

        self._fork(work, background)
        self.paused_s = time.perf_counter() - started


class ForkedRetention(ForkedWork):
    """A retention search (memsoak/agent/retention.py) on the heap as it stood at the fork, while
    the target goes on serving: the search reads every live object and may take seconds.

    Its cost is memory: the search touches every object the collector tracks (their reference
    counts), so the child copies the pages holding them, up to the size of the target's heap of
    such objects, for as long as it runs. Hence only on request (`"fork": true`)."""

    what = "retention search"

    def __init__(self, suspects: list[dict[str, Any]], max_seconds: float) -> None:
        if not tracemalloc.is_tracing():  # said here, as the search in-process says it
            raise RuntimeError("tracemalloc is not tracing in the target")
        # Collected here, not in the child: a collection runs finalizers, which are the target's
        # code (a `__del__` may flush a file or close a connection), and only the target may.
        gc.collect()

        def work() -> tuple[bytes, bytes]:  # pragma: no cover - runs in the child
            from memsoak.agent.retention import find_retention

            answer = find_retention(suspects, max_seconds=max_seconds, collect=False)
            return b"", _DOCUMENT + json.dumps(answer, separators=(",", ":")).encode()

        # Niced: the target and its load have the CPU first (the search is not what they wait for).
        self._fork(work, background=True)


def _run_child(
    read_end: int, write_end: int, work: Callable[[], tuple[bytes, bytes]], background: bool, parent_pid: int
) -> None:  # pragma: no cover - runs in the child
    """Never returns: whatever happens, the child ends here and never runs the target's code."""
    status = 1
    try:
        # A child outlives no target, however the target ends (its `close()` is never reached
        # when it is killed outright). Tied to the thread that forked it, which waits for the
        # child's answer: the child is of no use once that thread is gone.
        lifeline.end_with_parent(signal.SIGKILL, parent_pid)
        if background:
            os.nice(19)
        os.close(read_end)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the target's handlers are not the child's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.setprofile(None)  # a call-path watch (callers.py) or a debugger is the target's, not ours
        sys.settrace(None)
        # Nothing the child makes outlives it, a collection would walk the whole heap, and it
        # would run the target's finalizers.
        gc.disable()
        descriptions, answer = work()
        _write_all(write_end, _LENGTH.pack(len(descriptions)) + descriptions)
        _write_all(write_end, _LENGTH.pack(len(answer)) + answer)
        status = 0
    except BaseException:  # noqa: BLE001 - whatever it was, the child still only exits
        # The parent answers "died before it finished (see the target's log)": this is that log.
        # Written to the descriptor, not sys.stderr, whose lock another thread may have held at
        # the fork.
        with contextlib.suppress(BaseException):
            os.write(2, f"memsoak: forked child failed:\n{traceback.format_exc()}".encode(errors="replace"))
    finally:
        os._exit(status)


def _snapshot_in_child(
    min_site_bytes: int, max_document_bytes: int, rss_bytes: int, started: float, forked_after_s: float
) -> tuple[bytes, bytes]:  # pragma: no cover - runs in the child
    known = tracing.descriptions_known()
    traces = tracemalloc._get_traces()  # type: ignore[attr-defined]
    doc = tracing.snapshot_document(traces, min_site_bytes, rss_bytes, started, forked_after_s=forked_after_s)
    data = _DOCUMENT + json.dumps(doc, separators=(",", ":")).encode()
    if len(data) - 1 > max_document_bytes:
        data = (
            _REFUSED
            + (
                f"response of {len(data) - 1} bytes is over the limit of {max_document_bytes}; "
                "ask for a larger min_site_bytes"
            ).encode()
        )
    return tracing.descriptions_since(known), data


def _write_all(fd: int, data: bytes) -> None:  # pragma: no cover - runs in the child
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
