"""Tracebacks for suspects found in a series traced one frame deep, from the call paths the
agent saw reaching their lines (memsoak/agent/callers.py).

The agent's answer, as it comes:

    {"depth": 10, "lines": [{"file": str, "line": int, "calls": int,
                             "paths": [{"calls": int, "frames": [[file, line, function, code], ...]}]}]}

frames innermost last, the suspect's line itself last; most calls first. Read leniently: a
malformed entry is left out, and its suspect keeps its one-frame traceback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from analysis.model import Frame, Suspect, Traceback
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


def read_call_paths(doc: Mapping[str, object]) -> dict[tuple[str, int], tuple[Traceback, int]]:
    """(file, line) -> (the most called path's traceback, how many distinct paths were seen)."""
    found: dict[tuple[str, int], tuple[Traceback, int]] = {}
    lines = doc.get("lines")
    for entry in lines if isinstance(lines, list) else []:
        if not isinstance(entry, dict):
            continue
        file, line, paths = entry.get("file"), entry.get("line"), entry.get("paths")
        if not isinstance(file, str) or type(line) is not int or not isinstance(paths, list) or not paths:
            continue
        best = paths[0]
        raw_frames = best.get("frames") if isinstance(best, dict) else None
        frames = [_frame(raw) for raw in raw_frames] if isinstance(raw_frames, list) else []
        if not frames or any(f is None for f in frames):
            continue
        traceback = tuple(f for f in frames if f is not None)
        if (traceback[-1].file, traceback[-1].line) != (file, line):
            continue
        found[(file, line)] = (traceback, len(paths))
    return found


def origin(paths_seen: int) -> str:
    """Where a suspect's traceback came from, in words, when not from tracemalloc ("" then)."""
    if paths_seen <= 0:
        return ""
    if paths_seen == 1:
        return "the call path seen reaching the line (the series was traced one frame deep)"
    return (
        f"the most called of {paths_seen} call paths seen reaching the line (the series was traced "
        "one frame deep): run without --until-confident for the one keeping the memory"
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
        if seen is None or len(seen[0]) <= len(suspect.traceback):
            deepened.append(suspect)
            continue
        traceback, count = seen
        deepened.append(
            replace(
                suspect,
                traceback=traceback,
                user_frame=user_frame(traceback, library_files),
                paths_seen=count,
            )
        )
    return tuple(deepened)
