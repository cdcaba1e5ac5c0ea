"""What keeps a leak suspect's memory alive: its accumulation point and the reference path from a
root (a module global, a class attribute, a thread or greenlet local, a running frame) down to it.

The agent finds it inside the target (memsoak/agent/retention.py) and answers in JSON; this module
is the model and the reader of that answer (one entry per suspect asked about)::

    {"traceback": [[file, line], ...],           # innermost last: which suspect it is about
     "found": bool, "method": str,               # how the accumulation point was recognised
     "root": str,                                # "module app", "class app.Audit", ...
     "steps": [str, ...],                        # edges from the root, e.g. "global users_list"
     "held": {"type": str, "length": int | null, "size": int},   # the accumulation point
     "objects": int,                             # live objects allocated at the suspect's site
     "truncated": bool, "note": str}
"""

from __future__ import annotations

from typing import Any

from analysis.model import RetentionPath, Traceback

SiteKey = tuple[tuple[str, int], ...]


def site_key(traceback: Traceback) -> SiteKey:
    return tuple((frame.file, frame.line) for frame in traceback)


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


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
    )
