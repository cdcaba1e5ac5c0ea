"""Tracebacks for suspects found in a series traced one frame deep, from the call paths the
agent saw reaching their lines (memsoak/agent/callers.py).

The agent's answer, as it comes:

    {"depth": 10, "lines": [{"file": str, "line": int, "calls": int,
                             "paths": [{"calls": int, "frames": [[file, line, function, code], ...]}]}]}

frames innermost last, the suspect's line itself last; most calls first. Read leniently: a
malformed entry is left out, and its suspect keeps its one-frame traceback.

The most called path is not always the one keeping the memory: a helper two routes share leaks
through one of them only. For a line reached by several paths a short window traced as deep as
the paths tells them apart (memsoak/locust/plans/kept_paths.py); `weigh_kept` adds to each path
the bytes its allocations still hold at that window's end (`kept_bytes`), and the path holding
the most is the one shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from analysis.model import Frame, SiteStat, Suspect, Traceback
from analysis.suspects import user_frame


def _frame(raw: Any) -> Frame | None:
    if not isinstance(raw, list) or len(raw) != 4:
        return None
    file, line, function, code = raw
    if not (
        isinstance(file, str) and type(line) is int and isinstance(function, str) and isinstance(code, str)
    ):
        return None
    return Frame(file, line, function, code)


class SeenPaths(NamedTuple):
    traceback: Traceback  # the path shown
    seen: int  # distinct paths seen reaching the line
    kept: bool  # shown because its allocations stayed alive (`weigh_kept`), not for its calls


def _kept_bytes(path: Any) -> int:
    value = path.get("kept_bytes") if isinstance(path, dict) else None
    return value if type(value) is int and value > 0 else 0


def read_call_paths(doc: Mapping[str, object]) -> dict[tuple[str, int], SeenPaths]:
    """(file, line) -> the path to show: the one whose allocations stayed alive, when the answer
    was weighed (`weigh_kept`), else the most called; and how many distinct paths were seen."""
    found: dict[tuple[str, int], SeenPaths] = {}
    lines = doc.get("lines")
    for entry in lines if isinstance(lines, list) else []:
        if not isinstance(entry, dict):
            continue
        file, line, paths = entry.get("file"), entry.get("line"), entry.get("paths")
        if not isinstance(file, str) or type(line) is not int or not isinstance(paths, list) or not paths:
            continue
        kept = max(paths, key=_kept_bytes)
        best = kept if _kept_bytes(kept) else paths[0]
        raw_frames = best.get("frames") if isinstance(best, dict) else None
        frames = [_frame(raw) for raw in raw_frames] if isinstance(raw_frames, list) else []
        if not frames or any(f is None for f in frames):
            continue
        traceback = tuple(f for f in frames if f is not None)
        if (traceback[-1].file, traceback[-1].line) != (file, line):
            continue
        found[(file, line)] = SeenPaths(traceback, len(paths), best is kept and _kept_bytes(kept) > 0)
    return found


def several_paths(doc: Mapping[str, object]) -> list[tuple[str, int]]:
    """The lines reached by more than one call path: which one keeps the memory is unknown."""
    return [key for key, seen in read_call_paths(doc).items() if seen.seen > 1]


def _common_tail(a: Sequence[tuple[str, int]], b: Sequence[tuple[str, int]]) -> int:
    """How many frames two tracebacks share, from the innermost."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def weigh_kept(doc: Mapping[str, object], sites: Mapping[Traceback, SiteStat]) -> dict[str, object]:
    """The call-path answer with each path's `kept_bytes`: the live bytes of the `sites` (a
    snapshot of a window traced as deep as the paths) at the path's line whose traceback is
    closest to it (most frames in common from the innermost). A path the requests reach but
    whose allocations die with the request keeps nothing."""
    lines = doc.get("lines")
    if not isinstance(lines, list):
        return dict(doc)
    weighed: list[object] = []
    for entry in lines:
        paths = entry.get("paths") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(paths, list):
            weighed.append(entry)
            continue
        keys = [
            [(f[0], f[1]) for f in p["frames"] if isinstance(f, list) and len(f) >= 2]
            if isinstance(p, dict) and isinstance(p.get("frames"), list)
            else []
            for p in paths
        ]
        kept = [0] * len(paths)
        for traceback, stat in sites.items():
            if not traceback or (traceback[-1].file, traceback[-1].line) != (
                entry.get("file"),
                entry.get("line"),
            ):
                continue
            site = [(f.file, f.line) for f in traceback]
            shared = [_common_tail(site, key) for key in keys]
            if max(shared, default=0) > 0:
                kept[shared.index(max(shared))] += stat.size
        weighed.append(
            {
                **entry,
                "paths": [
                    {**p, "kept_bytes": k} if isinstance(p, dict) else p
                    for p, k in zip(paths, kept, strict=True)
                ],
            }
        )
    return {**doc, "lines": weighed}


def origin(paths_seen: int, kept: bool = False) -> str:
    """Where a suspect's traceback came from, in words, when not from tracemalloc ("" then)."""
    if paths_seen <= 0:
        return ""
    if paths_seen == 1:
        return "the call path seen reaching the line (the series was traced one frame deep)"
    if kept:
        return (
            f"the one of {paths_seen} call paths seen reaching the line whose allocations stayed alive "
            "(the series was traced one frame deep)"
        )
    return (
        f"the most called of {paths_seen} call paths seen reaching the line (the series was traced "
        "one frame deep): run with --frames 10 for the one keeping the memory"
    )


def deepen(
    suspects: tuple[Suspect, ...], doc: Mapping[str, object], library_files: Sequence[str]
) -> tuple[Suspect, ...]:
    """Suspects with the call path seen reaching their line, where it is deeper than their own
    traceback; the rest as they were."""
    paths = read_call_paths(doc)
    deepened = []
    for suspect in suspects:
        seen = paths.get((suspect.file, suspect.line))
        if seen is None or len(seen.traceback) <= len(suspect.traceback):
            deepened.append(suspect)
            continue
        deepened.append(
            replace(
                suspect,
                traceback=seen.traceback,
                user_frame=user_frame(seen.traceback, library_files),
                paths_seen=seen.seen,
                path_kept=seen.kept,
            )
        )
    return tuple(deepened)
