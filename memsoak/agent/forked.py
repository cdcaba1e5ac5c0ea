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
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

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


class ForkedSnapshot:
    """One snapshot: taken (collection, then fork) when made; `document()` yields its JSON as
    the child sends it. Reading blocks the calling thread, cooperatively under gevent's patched
    `select`, while the process goes on serving others. `close()` ends the child either way."""

    def __init__(self, min_site_bytes: int, max_document_bytes: int, *, background: bool = False) -> None:
        """`background`: the load goes on while the document comes (the client was told the state
        is taken), so the child runs at a lower priority and takes only the CPU the target and
        the load leave it."""
        started = time.perf_counter()
        rss_bytes = tracing.collect_before_snapshot()
        self._read_end, write_end = os.pipe()
        try:
            self._pid = _unpatched("fork")()
        except OSError:
            os.close(self._read_end)
            os.close(write_end)
            raise
        if self._pid == 0:  # pragma: no cover - the child; coverage does not follow it
            limits = (min_site_bytes, max_document_bytes)
            _build_in_child(self._read_end, write_end, limits, rss_bytes, started, background)
        os.close(write_end)
        self.paused_s = time.perf_counter() - started
        self._deadline = time.monotonic() + CHILD_DEADLINE_S
        self._done = False

    def document(self) -> Iterator[bytes]:
        """The document's bytes, in chunks; ChildFailed before the first one if it cannot come."""
        tracing.remember_descriptions(self._read_exact(self._read_length()))
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
                raise ChildFailed(f"the snapshot child took over {CHILD_DEADLINE_S:g} s and was killed")
            ready, _, _ = select.select([self._read_end], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self._read_end, most)
                if not chunk:
                    raise ChildFailed("the snapshot child died before it finished (see the target's log)")
                return chunk


def _build_in_child(
    read_end: int,
    write_end: int,
    limits: tuple[int, int],
    rss_bytes: int,
    started: float,
    background: bool,
) -> None:  # pragma: no cover - runs in the child
    """Never returns: whatever happens, the child ends here and never runs the target's code."""
    status = 1
    try:
        forked_after_s = time.perf_counter() - started
        min_site_bytes, max_document_bytes = limits
        if background:
            os.nice(19)
        os.close(read_end)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the target's handlers are not the child's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.setprofile(None)  # a call-path watch (callers.py) or a debugger is the target's, not ours
        sys.settrace(None)
        gc.disable()  # nothing the child makes outlives it, and a collection would walk the traces
        known = tracing.descriptions_known()
        traces = tracemalloc._get_traces()  # type: ignore[attr-defined]
        doc = tracing.snapshot_document(
            traces, min_site_bytes, rss_bytes, started, forked_after_s=forked_after_s
        )
        data = _DOCUMENT + json.dumps(doc, separators=(",", ":")).encode()
        if len(data) - 1 > max_document_bytes:
            data = (
                _REFUSED
                + (
                    f"response of {len(data) - 1} bytes is over the limit of {max_document_bytes}; "
                    "ask for a larger min_site_bytes"
                ).encode()
            )
        descriptions = tracing.descriptions_since(known)
        _write_all(write_end, _LENGTH.pack(len(descriptions)) + descriptions)
        _write_all(write_end, _LENGTH.pack(len(data)) + data)
        status = 0
    finally:
        os._exit(status)


def _write_all(fd: int, data: bytes) -> None:  # pragma: no cover - runs in the child
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
