"""The native window's sites: memray's leaked allocations, grouped by hybrid stack, per request.

Input: the agent's answer to `native/stop` (memsoak/agent/native.py), one window per process of
the target: its requests, its RSS at both ends and what it left allocated, grouped by hybrid stack
(innermost frame first, as memray gives them). Output: `NativeWindow`, the `native` section of
report.json, and the sentence the verdict says about it.

A stack is cut after the first frame in the user's own code (a Python file outside the stdlib,
the installed packages and memsoak): what is above is the server's and the framework's, the same
for every request. A run of frames memray could not name (a stripped Rust or C library) becomes one
frame; a frame it named without a file (no debug information) has the shared object it is in,
where the agent found it. A site counts only when it leaked often enough to be per-request: one
block that happened to be taken in the window and kept (a pymalloc arena, a buffer that grew
once) is not a leak.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UNKNOWN = "<unknown>"
MIN_BYTES_PER_REQUEST = 64.0
MIN_COUNT_PER_REQUEST = 0.1  # a site leaking once in ten requests or more often (ujson 5.3.0: one in eight)
# Below this share of the RSS growth, the sites are not the leak: the report says the window
# does not see it, rather than naming the little it saw.
EXPLAINS_MOST = 0.5
MAX_SITES = 20
# Where CPython's and libc's own frames come from: the allocator and call machinery between the
# code that asked for memory and the allocation, named last when naming a site.
_RUNTIME_DIRS = ("Objects/", "Python/", "Include/", "Modules/", "Parser/")
_RUNTIME_FILES = _RUNTIME_DIRS + tuple("./" + d for d in _RUNTIME_DIRS)
_RUNTIME_FUNCTIONS = ("malloc", "calloc", "realloc", "free", "mmap", "posix_memalign", "aligned_alloc")


@dataclass(frozen=True, slots=True)
class NativeFrame:
    function: str
    file: str | None  # None where memray could not name it
    line: int | None

    @property
    def is_python(self) -> bool:
        return self.file is not None and self.file.endswith((".py", ".pyw"))

    @property
    def is_runtime(self) -> bool:
        """CPython's or libc's: the allocator and call machinery between code and its memory."""
        return self.function in _RUNTIME_FUNCTIONS or (
            self.file is not None and self.file.startswith(_RUNTIME_FILES)
        )

    def where(self) -> str:
        if self.function == UNKNOWN:
            return f"{UNKNOWN} (native frames with no symbols)"
        if self.file is None:
            return f"{self.function} (a native frame with no file)"
        if self.line:
            return f"{self.file}:{self.line} {self.function}"
        # A shared object without debug information: its name says which library it is.
        return f"{self.function} (in {posixpath.basename(self.file)})"


@dataclass(frozen=True, slots=True)
class NativeSite:
    bytes_per_request: float
    count_per_request: float
    stack: tuple[NativeFrame, ...]  # innermost first, up to the first user frame
    user_frame: NativeFrame | None  # the user's line calling into it (the stack's last frame)

    @property
    def named_frame(self) -> NativeFrame:
        """The frame that names the site: the innermost one that is not CPython's or libc's
        allocation machinery, an extension's function; a run of unnamed frames where the call
        reaches the runtime or Python again first (a stripped library)."""
        unnamed = None
        for frame in self.stack:
            if frame.function == UNKNOWN:
                unnamed = unnamed or frame
            elif frame.is_python:
                break
            elif frame.is_runtime:
                if unnamed is not None:
                    break
            else:
                return frame  # the unnamed frames before it were its own (static, inlined)
        return unnamed or self.stack[0]

    @property
    def library_frame(self) -> NativeFrame | None:
        """The innermost Python frame below the user's, when the call went through a library."""
        for frame in self.stack:
            if frame.is_python:
                return None if frame == self.user_frame else frame
        return None


@dataclass(frozen=True, slots=True)
class NativeWindow:
    requests: int  # requests recorded in the window, summed over the target's processes
    explained_share: float  # the sites' bytes / RSS growth in the window (0 when RSS did not grow)
    rss_growth_bytes: int  # what the share is of: the measured run's rate over the window's requests
    leaked_bytes: int  # everything memray saw left allocated, sites or not
    sites: tuple[NativeSite, ...]  # most bytes first, above the floor
    processes: int = 1
    timed_out: bool = False
    note: str = ""

    @property
    def explains_growth(self) -> bool:
        return bool(self.sites) and self.explained_share >= EXPLAINS_MOST


def _frame(raw: Sequence[Any]) -> NativeFrame:
    function, file, line = str(raw[0]), str(raw[1]), int(raw[2])
    if function == UNKNOWN:
        return NativeFrame(UNKNOWN, None, None)
    if file == UNKNOWN:  # a name without a file: an extension built without debug information
        return NativeFrame(function, None, None)
    return NativeFrame(function, file, line or None)


def _is_user(frame: NativeFrame, library_files: Sequence[str]) -> bool:
    file = frame.file
    return (
        file is not None
        and frame.is_python
        and not file.startswith("<")
        and not any(file.startswith(prefix) for prefix in library_files)
    )


def trim_stack(
    frames: Sequence[Sequence[Any]], library_files: Sequence[str]
) -> tuple[tuple[NativeFrame, ...], NativeFrame | None]:
    """The stack innermost first up to (with) the first user frame, runs of unnamed frames as one;
    and that user frame, or None when the stack has none (then it is kept whole)."""
    kept: list[NativeFrame] = []
    for raw in frames:
        frame = _frame(raw)
        if frame.function == UNKNOWN and kept and kept[-1].function == UNKNOWN:
            continue
        kept.append(frame)
        if _is_user(frame, library_files):
            return tuple(kept), frame
    return tuple(kept), None


def read_native(answer: Mapping[str, Any], rss_per_request: float | None = None) -> NativeWindow | None:
    """The agent's `native/stop` answer as a window; None when it holds no window, or none that
    reads (a run.json edited by hand, an agent of another version).

    `rss_per_request`: the measured run's RSS growth per request, which the share of the growth
    the sites explain is taken of, over the window's requests. The window's own RSS is a poor
    measure of it: memray's own buffers and caches grow it by megabytes as the window starts, and
    freeing them after one window lets the next reuse that memory without growing at all."""
    try:
        return _read(answer, rss_per_request)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return None


def _read(answer: Mapping[str, Any], rss_per_request: float | None) -> NativeWindow | None:
    windows = [w for w in answer.get("windows", ()) if isinstance(w, Mapping)]
    if not windows:
        return None
    requests = sum(int(w.get("requests", 0)) for w in windows)
    window_growth = sum(int(w.get("rss_end", 0)) - int(w.get("rss_start", 0)) for w in windows)
    growth = round(rss_per_request * requests) if rss_per_request is not None else window_growth
    grouped: dict[tuple[NativeFrame, ...], list[Any]] = {}
    for window in windows:
        library = [str(p) for p in window.get("library_files", ())]
        for stack in window.get("stacks", ()):
            frames, user = trim_stack(stack.get("frames", ()), library)
            entry = grouped.setdefault(frames, [0, 0, user])
            entry[0] += int(stack.get("bytes", 0))
            entry[1] += int(stack.get("count", 0))
    sites = []
    for frames, (size, count, user) in grouped.items():
        per_request = size / requests if requests else 0.0
        count_per_request = count / requests if requests else 0.0
        if per_request >= MIN_BYTES_PER_REQUEST and count_per_request >= MIN_COUNT_PER_REQUEST:
            sites.append(NativeSite(per_request, count_per_request, frames, user))
    sites.sort(key=lambda s: -s.bytes_per_request)
    explained = sum(s.bytes_per_request for s in sites) * requests
    notes = [str(w["note"]) for w in windows if w.get("note")]
    return NativeWindow(
        requests=requests,
        explained_share=round(explained / growth, 3) if growth > 0 else 0.0,
        rss_growth_bytes=growth,
        leaked_bytes=sum(int(w.get("leaked_bytes", 0)) for w in windows),
        sites=tuple(sites[:MAX_SITES]),
        processes=len(windows),
        timed_out=any(bool(w.get("timed_out")) for w in windows),
        note="; ".join(notes),
    )


def explain(window: NativeWindow) -> str:
    """What the window found, for the verdict's explanation: the top site and the user's line
    calling into it, or, when the sites explain little of the growth, that it cannot see it."""
    head = f"A native window of {window.requests:,} requests with memray"
    if window.requests == 0:
        return f"{head} recorded no request{': ' + window.note if window.note else ''}."
    per_request = window.rss_growth_bytes / window.requests
    if not window.explains_growth:
        return (
            f"{head} explains {window.explained_share:.0%} of the run's RSS growth "
            f"({per_request:,.0f} bytes per request): the memory is taken where memray's hooks do "
            "not see it (a direct call into libc through ctypes, mmap, a custom allocator), so no "
            "site is named."
        )
    top = window.sites[0]
    return (
        f"{head} {explained(window)}; the top native "
        f"site leaks {top.bytes_per_request:,.0f} bytes per request ({_blocks(top.count_per_request)} "
        f"blocks) in {site_summary(top)}."
    )


def _blocks(per_request: float) -> str:
    return f"{per_request:.2f}" if per_request < 1 else f"{per_request:,.1f}"


def explained(window: NativeWindow) -> str:
    """How much of the RSS growth the sites explain, in words: more than all of it where they
    hold memory that was taken but never written to, which is not resident (a buffer C code
    took whole and filled in part)."""
    if window.explained_share > 1:
        return (
            f"explains all of the run's RSS growth: its sites hold {window.explained_share:.1f}x as "
            "much, memory taken but never written to not being resident"
        )
    return f"explains {window.explained_share:.0%} of the run's RSS growth"


def site_summary(site: NativeSite) -> str:
    """One line for a site, as the writers show it: the frame that names it, the library frame
    the call went through and the user's line."""
    parts = [site.named_frame.where()]
    via = site.library_frame
    if via is not None:
        parts.append(f"through {via.where()}")
    if site.user_frame is not None and site.user_frame != site.named_frame:
        parts.append(f"from {site.user_frame.where()}")
    return ", ".join(parts)
