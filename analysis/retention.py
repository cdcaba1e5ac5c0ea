"""What keeps a leak suspect's memory alive: its kind, its accumulation point and the reference
path from a root (a module global, a class attribute, a thread or greenlet local, a running frame)
down to it.

The agent finds it inside the target (memsoak/agent/retention.py) and answers in JSON; this module
reads that answer (one entry per suspect asked about) into `analysis.model.RetentionPath`::

    {"traceback": [[file, line], ...],           # innermost last: which suspect it is about
     "kind": "reachable" | "unreachable" | "raw" | "unknown",
     "found": bool, "method": str,               # how the accumulation point was recognised
     "root": str,                                # "module app", "class app.Audit", "unreferenced traceback"
     "steps": [str, ...],                        # edges from the root, e.g. "global users_list"
     "holder": str,                              # "logging.Logger.manager.loggerDict (dict of 3,200 Logger)"
     "group": str | null,                        # suspects with one group share one root
     "created_at": [[file, line, function, code], ...],   # where the root's newest item (or the
                                                 # unreferenced object) was allocated, innermost last
     "held": {"type": str, "length": int | null, "size": int},   # the accumulation point
     "objects": int,                             # live objects allocated at the suspect's site
     "truncated": bool, "note": str}

An answer from an agent before kinds (no "kind") reads as "reachable" when found, else "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from analysis.model import Frame, RetentionKind, RetentionPath, Traceback

KINDS: tuple[RetentionKind, ...] = ("reachable", "unreachable", "raw", "unknown")

SiteKey = tuple[tuple[str, int], ...]


def site_key(traceback: Traceback) -> SiteKey:
    return tuple((frame.file, frame.line) for frame in traceback)


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _frames(raw: Any) -> Traceback:
    frames = []
    for item in raw if isinstance(raw, list) else ():
        if not (isinstance(item, list) and len(item) == 4 and type(item[1]) is int):
            return ()
        file, line, function, code = item
        if not (isinstance(file, str) and isinstance(function, str) and isinstance(code, str)):
            return ()
        frames.append(Frame(file, line, function, code))
    return tuple(frames)


def _kind(doc: dict[str, Any]) -> RetentionKind:
    kind = doc.get("kind")
    for known in KINDS:
        if kind == known:
            return known
    return "reachable" if doc.get("found") is True else "unknown"


def read_retentions(answers: Iterable[Any]) -> dict[SiteKey, RetentionPath]:
    """The agent's answer entries by the suspect traceback each is about; malformed ones left out."""
    paths: dict[SiteKey, RetentionPath] = {}
    for doc in answers:
        entry = read_retention(doc)
        if entry is not None:
            paths[entry[0]] = entry[1]
    return paths


def read_retention(doc: Any) -> tuple[SiteKey, RetentionPath] | None:
    """One agent answer entry, or None when it is malformed (the agent is the target's code:
    a bad entry is dropped, never trusted)."""
    if not isinstance(doc, dict):
        return None
    raw_tb = doc.get("traceback")
    if not isinstance(raw_tb, list):
        return None
    key: list[tuple[str, int]] = []
    for item in raw_tb:
        if not (
            isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and type(item[1]) is int
        ):
            return None
        key.append((item[0], item[1]))
    held = doc.get("held") if isinstance(doc.get("held"), dict) else {}
    assert isinstance(held, dict)
    steps = doc.get("steps")
    return tuple(key), RetentionPath(
        found=doc.get("found") is True,
        method=_str(doc, "method") or "none",
        root=_str(doc, "root"),
        steps=tuple(s for s in steps if isinstance(s, str)) if isinstance(steps, list) else (),
        held_type=_str(held, "type"),
        held_length=_int(held.get("length")),
        held_size=_int(held.get("size")) or 0,
        objects=_int(doc.get("objects")) or 0,
        truncated=doc.get("truncated") is True,
        note=_str(doc, "note"),
        kind=_kind(doc),
        holder=_str(doc, "holder"),
        group=doc["group"] if isinstance(doc.get("group"), str) else None,
        created_traceback=_frames(doc.get("created_at")),
    )
