"""tracemalloc inside the target: snapshots grouped by traceback, in the wire format that
`analysis.snapshot_io` reads (see its docstring)."""

from __future__ import annotations

import gc
import linecache
import os
import re
import sys
import sysconfig
import time
import tokenize
import tracemalloc
from collections.abc import Iterable
from itertools import groupby, islice
from operator import itemgetter
from types import ModuleType
from typing import Any

import psutil

from memsoak.agent.census import census

_grouping: ModuleType | None
try:  # built with memsoak (setup.py); missing only where C extensions are not (PyPy, say)
    from memsoak.agent import _grouping
except ImportError:  # pragma: no cover
    _grouping = None

# A site with this file anywhere in its traceback was allocated by the agent taking a snapshot
# (linecache filling, caches below), not by the app.
_HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS_FILES = (os.path.join(_HERE, "tracing.py"), os.path.join(_HERE, "forked.py"))


def library_files() -> tuple[str, ...]:
    """Where the stdlib and installed packages live in *this* process (the target's view)."""
    paths = sysconfig.get_paths()
    found = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    found.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return tuple(sorted(os.path.join(p, "") for p in found))


# Once, at import: sysconfig fills its caches on first use, and inside a traced snapshot those
# allocations would look like growth, with the agent's frame cut off by the traceback limit.
_LIBRARY_FILES = library_files()

_DEFINITION = re.compile(r"^(\s*)(?:async\s+def|def|class)\s+(\w+)")


def _read_source(filename: str) -> list[str]:
    try:
        with tokenize.open(filename) as file:
            return file.readlines()
    except (OSError, SyntaxError, UnicodeDecodeError):
        # Not a plain file (zip imports, frozen modules): ask the module's loader once.
        lines = linecache.getlines(filename)
        linecache.cache.pop(filename, None)
        return lines


def _function_spans(source: list[str]) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of each function, outer ones first. A line scan
    by indentation, not `ast`: it runs inside the traced target, where a full parse of every
    file on the stack took tens of seconds under tracemalloc."""
    spans: list[tuple[int, int, str]] = []
    open_defs: list[tuple[int, int, str, bool]] = []  # (indent, first line, qualname, is_function)
    last_code_line = 0

    def close_to(indent: int) -> None:
        while open_defs and open_defs[-1][0] >= indent:
            _indent, first, name, is_function = open_defs.pop()
            if is_function:
                spans.append((first, last_code_line, name))

    for number, text in enumerate(source, start=1):
        stripped = text.strip()
        if not stripped or stripped.startswith(("#", ")", "]", "}")):
            continue
        indent = len(text) - len(text.lstrip())
        close_to(indent)
        match = _DEFINITION.match(text)
        if match:
            parent = open_defs[-1][2] + "." if open_defs else ""
            is_function = not stripped.startswith("class")
            open_defs.append((indent, number, parent + match.group(2), is_function))
        last_code_line = number
    close_to(0)
    spans.sort(key=lambda span: (span[0], -span[1]))
    return spans


def _function_at(spans: list[tuple[int, int, str]], line: int) -> str:
    name = "<module>"
    for first, last, qualified in spans:
        if first > line:
            break
        if line <= last:
            name = qualified
    return name


def current_rss() -> int:
    return int(psutil.Process().memory_info().rss)


def status() -> dict[str, Any]:
    traced, peak = tracemalloc.get_traced_memory()
    return {
        **census(),
        "pid": os.getpid(),
        "traced_bytes": traced,
        "traced_peak_bytes": peak,
        "tracing": tracemalloc.is_tracing(),
        "frames_limit": tracemalloc.get_traceback_limit(),
        "configured_frames": configured_frames,
        "tracemalloc_overhead_bytes": tracemalloc.get_tracemalloc_memory(),
        "python": sys.version.split()[0],
    }


def group_traces(traces: list[Any]) -> list[tuple[Any, int, int]]:
    """(traceback, size, count) per distinct traceback in `tracemalloc._get_traces()` output.

    Runs inside the paused target, under tracemalloc, where every allocation costs many times its
    untraced price, so nothing here allocates per trace. `_get_traces` hands out one tuple object
    per distinct traceback, so grouping by the tuple's address groups equal tracebacks: the C
    extension (`_grouping.c`) does it in one pass over the list with a hash table outside
    tracemalloc's view: 0.06 s for 2.7 million traces under tracing, against 0.4 s for the numpy
    argsort of addresses it replaced (which read every trace twice, then sorted). Equal
    tracebacks that arrive as different objects are merged here, per group, not per trace, so
    the result never depends on that sharing, only the speed does."""
    if _grouping is None:
        return _group_by_sorting(traces)
    grouped: list[tuple[Any, int, int]] = _grouping.group(traces)
    if len(set(map(itemgetter(0), grouped))) == len(grouped):
        return grouped
    merged: dict[Any, list[int]] = {}
    for traceback, size, count in grouped:
        entry = merged.setdefault(traceback, [0, 0])
        entry[0] += size
        entry[1] += count
    return [(traceback, size, count) for traceback, (size, count) in merged.items()]


def _group_by_sorting(traces: list[Any]) -> list[tuple[Any, int, int]]:
    """Without the C extension (a Python that cannot load it): sorting and summing runs in C and
    allocates per group, not per trace, but compares whole tracebacks (measured: 0.75 s for 790k
    traces of few tracebacks, several seconds for millions of traces of thousands)."""
    traces = sorted(traces, key=itemgetter(2))
    grouped = []
    for traceback, group in groupby(traces, key=itemgetter(2)):
        rows = list(group)
        grouped.append((traceback, sum(map(itemgetter(1), rows)), len(rows)))
    return grouped


_descriptions: dict[tuple[str, int], tuple[str, str]] = {}


def describe(frames: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, str]]:
    """(function, source line) for each frame, remembered across snapshots. Each source file
    is read once per new frame batch and not kept: linecache would hold every file on the
    stack in the target, hundreds of thousands of traced strings."""
    missing: dict[str, list[int]] = {}
    for file, line in frames:
        if (file, line) not in _descriptions:
            missing.setdefault(file, []).append(line)
    for file, lines in missing.items():
        source = _read_source(file)
        spans = _function_spans(source)
        for line in lines:
            code = source[line - 1].strip() if 0 < line <= len(source) else ""
            _descriptions[(file, line)] = (_function_at(spans, line), code)
    return _descriptions


def descriptions_known() -> int:
    return len(_descriptions)


def descriptions_since(known: int) -> bytes:
    """The descriptions worked out after the first `known`, for another process that has those
    (a forked child's parent): NUL-separated fields, which `remember_descriptions` reads without
    a JSON parser, so every string it makes is allocated here, in a file snapshots leave out."""
    fields: list[str] = []
    for (file, line), (function, code) in islice(_descriptions.items(), known, None):
        fields += (file, str(line), function, code.replace("\0", ""))
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def remember_descriptions(blob: bytes) -> None:
    """Keep what `descriptions_since` sent (the same frames in the same source files)."""
    if not blob:
        return
    fields = blob.decode("utf-8", "surrogateescape").split("\0")
    if len(fields) % 4:
        raise ValueError("frame descriptions come in fours")
    for file, line, function, code in zip(*[iter(fields)] * 4, strict=True):
        _descriptions.setdefault((file, int(line)), (function, code))


def sites_from_traces(traces: list[Any], min_site_bytes: int = 0) -> tuple[list[list[Any]], list[list[Any]]]:
    """The wire format's frame table and site rows (see analysis.snapshot_io) for raw traces.

    The cyclic GC is off meanwhile: the caller has just collected, and with millions of fresh
    trace tuples alive every collection the loop below triggered would walk them all (measured:
    3x slower grouping under tracing)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        grouped = group_traces(traces)
        frame_index: dict[tuple[str, int], int] = {}
        find = frame_index.get
        sites = []
        for traceback, size, count in grouped:
            if size < min_site_bytes:
                continue
            indexes = []
            # tracemalloc lists the most recent frame first; the wire format wants it last.
            for frame in reversed(traceback):
                index = find(frame)
                if index is None:  # only new frames make a new int: each one costs under tracing
                    index = frame_index[frame] = len(frame_index)
                indexes.append(index)
            sites.append([size, count, indexes])
        del grouped
    finally:
        if gc_was_enabled:
            gc.enable()
    described = describe(frame_index)
    frames = [[file, line, *described[(file, line)]] for file, line in frame_index]
    return frames, sites


def take_snapshot(min_site_bytes: int = 0) -> dict[str, Any]:
    """Collect garbage, then snapshot live traced memory grouped by traceback, leaving out
    tracebacks holding less than `min_site_bytes` (an error of at most that much per site in a
    diff, for a snapshot several times smaller and faster). Blocks the process while it runs;
    `duration_s` says for how long. (`memsoak.agent.forked` pauses it far less.)"""
    started = time.perf_counter()
    rss_bytes = collect_before_snapshot()
    traces = tracemalloc._get_traces()  # type: ignore[attr-defined]
    return snapshot_document(traces, min_site_bytes, rss_bytes, started)


def collect_before_snapshot() -> int:
    """What every snapshot starts with, in the target: a full collection (garbage is not
    retention), then the RSS it leaves."""
    if not tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is not tracing in the target")
    gc.collect()
    return current_rss()


def snapshot_document(
    traces: list[Any],
    min_site_bytes: int,
    rss_bytes: int,
    started: float,
    *,
    forked_after_s: float | None = None,
) -> dict[str, Any]:
    """The wire document for `tracemalloc._get_traces()` output (raw tuples: Snapshot() would wrap
    each in objects). `forked_after_s`: built in a child forked that long after `started` (the
    target's whole pause), which stops tracing once tracemalloc's figures are read, so the rest
    runs untraced, and says how long it took as `child_s`."""
    traced, _peak = tracemalloc.get_traced_memory()
    overhead = tracemalloc.get_tracemalloc_memory()
    frames_limit = tracemalloc.get_traceback_limit()
    if forked_after_s is not None:
        tracemalloc.stop()
    frames, sites = sites_from_traces(traces, min_site_bytes)
    del traces
    elapsed = time.perf_counter() - started
    timing = {"duration_s": elapsed} if forked_after_s is None else {
        "duration_s": forked_after_s, "child_s": elapsed - forked_after_s
    }  # fmt: skip
    return {
        "format": "memsoak-snapshot",
        "version": 1,
        "pid": os.getpid() if forked_after_s is None else os.getppid(),
        "taken_at": time.time(),
        **timing,
        "rss_bytes": rss_bytes,
        "traced_bytes": traced,
        "tracemalloc_overhead_bytes": overhead,
        "frames_limit": frames_limit,
        "min_site_bytes": min_site_bytes,
        "harness_files": list(HARNESS_FILES),
        "library_files": list(_LIBRARY_FILES),
        "frames": frames,
        "sites": sites,
    }


# The depth tracing starts at when a request turns it on without naming one: what the target
# was launched with (`memsoak serve --frames`), even when it was launched untraced.
configured_frames = 1


def set_tracing(enable: bool, frames: int | None = None) -> dict[str, Any]:
    if enable:
        if tracemalloc.is_tracing() and frames and frames != tracemalloc.get_traceback_limit():
            tracemalloc.stop()
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames or configured_frames)
    elif tracemalloc.is_tracing():
        tracemalloc.stop()
    return status()


# Run the grouping once untraced, at import, so nothing it loads lazily is loaded in a snapshot.
group_traces([(0, 1, (("", 0),), 1), (0, 2, (("", 1),), 1)])
