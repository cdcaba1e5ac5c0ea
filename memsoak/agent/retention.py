"""What keeps a leak suspect alive, found inside the target (like Eclipse MAT's "Leak Suspects").

Given a suspect's traceback, find its accumulation point, the live object in which the memory
piles up, and walk referrers from it to what keeps it (retention_walk.py). The accumulation
point is, in order of preference:

1. "items": a container (list, dict, set, deque, ...) whose items, or the objects those items
   hold one or two references down, were allocated at the suspect's traceback (a cache dict, a
   registry list). Found by sampling the newest items of every large container.
2. "objects" or "buffer": an object allocated at the suspect's traceback, or a container whose
   item buffer was (the seed's list grows its item array at the suspect's line, but the list
   itself was made elsewhere), among the objects the collector tracks and, failing those, among
   the untracked objects they refer to (strings, numbers, dicts of such).

Each suspect gets a kind: "reachable" (a route from a root), "unreachable" (objects nothing the
collector tracks refers to: a reference leaked by C code), "raw" (a complete search found no
Python object at the site: memory C code took from Python's allocators), "unknown" (the budget
ran out first). Suspects whose walks end in the same holder (a registry) or the same unreferenced
object (a leaked traceback and all it keeps) share a `group`, and `created_at` is where that
holder's newest item, or that object, was allocated: the line that made the leak.

Bounded: a few passes over `gc.get_objects()`, a few referents per sampled item, `max_depth`
referrer steps per walk (shared between walks), and a time budget after which it answers with
what it has (`truncated`). The answer is plain JSON (analysis/retention.py documents and reads it).
"""

from __future__ import annotations

import collections
import gc
import time
import tracemalloc
import types
from typing import Any

from memsoak.agent import tracing
from memsoak.agent._objtrace import object_traceback, scan
from memsoak.agent.retention_walk import (
    CONTAINERS,
    MIN_CONTAINER_LEN,
    Budget,
    Route,
    Walk,
    describe_holder,
    length_of,
    newest_items,
    running_frames,
    size_of,
    type_name,
)
from memsoak.agent.startup import FROZEN_AT_IMPORT

MAX_SUSPECTS = 10
SAMPLE_ITEMS = 4  # newest items of a container looked at
SAMPLE_REFERENTS = 4  # referents of each sampled item looked at, per level
SiteKey = tuple[tuple[str, int], ...]
# Objects whose referents lead everywhere (a module's namespace, a class's bases): never a leak's
# payload.
_NOT_DESCENDED = (
    type,
    types.ModuleType,
    types.FrameType,
    types.FunctionType,
    types.CodeType,
    str,
    bytes,
    int,
    float,
)
_RAW_NOTE = (
    "no Python object at this site among the objects the collector tracks or what they refer to: "
    "memory C code took from Python's allocators and never freed (or an untracked object, such as "
    "a str, that C code leaked)"
)


def _key_of(obj: Any) -> SiteKey | None:
    """Where `obj` was allocated, innermost frame FIRST (tracemalloc's raw form), for instances
    of Python classes too (_objtrace.c says why tracemalloc's own lookup misses those)."""
    return object_traceback(obj)


def _containers(objects: list[Any]) -> list[Any]:
    """Containers of MIN_CONTAINER_LEN items or more, biggest first: a leak's accumulation point
    holds an item per request or more, so it is met early when the time budget is short."""
    found = []
    for obj in objects:
        if isinstance(obj, CONTAINERS):
            if len(obj) >= MIN_CONTAINER_LEN:
                found.append(obj)
            if type(obj) is dict:
                for value in obj.values():
                    if type(value) is dict and len(value) >= MIN_CONTAINER_LEN and not gc.is_tracked(value):
                        found.append(value)
    found.sort(key=len, reverse=True)
    return found


def _leads_to(
    item: Any, wanted: dict[SiteKey, int], innermost: set[tuple[str, int]], depth: int = 2
) -> set[int]:
    """The suspects whose traceback allocated `item` or an object it holds (to `depth`): a
    registry entry is often a small wrapper (a partial, a bound method) around the big payload."""
    reached: set[int] = set()
    level = [item]
    for _ in range(depth + 1):
        following: list[Any] = []
        for obj in level:
            key = _key_of(obj)
            if key and key[0] in innermost and key in wanted:
                reached.add(wanted[key])
            if isinstance(obj, _NOT_DESCENDED):
                continue
            if isinstance(obj, CONTAINERS) and len(obj) > SAMPLE_REFERENTS:
                continue  # a container of its own: looked at in its own right
            following.extend(gc.get_referents(obj)[:SAMPLE_REFERENTS])
        level = following
    return reached


class _Search:
    """The passes over the live objects, each for the suspects the ones before left unexplained."""

    def __init__(self, suspects: list[dict[str, Any]], budget: Budget) -> None:
        self.budget = budget
        self.wanted: dict[SiteKey, int] = {}  # innermost frame first, as `_key_of` gives them
        for index, suspect in enumerate(suspects):
            key = tuple((file, line) for file, line in reversed(suspect["traceback"]))
            self.wanted.setdefault(key, index)
        self.innermost = {key[0] for key in self.wanted if key}
        # suspect -> accumulation point, and how it was recognised. Two flat tables, no tuples:
        # the walks must meet no container of the search's own on their way up.
        self.points: dict[int, Any] = {}
        self.methods: dict[int, str] = {}
        self.hits: collections.Counter[int] = collections.Counter()
        self.scanned = 0
        self.complete = True  # every pass looked at every object it meant to

    def remaining(self) -> set[int]:
        return set(self.wanted.values()) - set(self.points)

    def containers(self, objects: list[Any]) -> None:
        """Only a few items of each are looked up, so it is cheap. A dict holding only strings
        and numbers is not tracked by the collector (so not in `objects`): such dicts are found
        as values of the tracked dicts (module and instance namespaces) that hold them."""
        looked_at: dict[int, set[int]] = {}
        for obj in _containers(objects):
            self.scanned += 1
            if not self.scanned & 255 and self.budget.over():
                break
            if not self.remaining():
                break  # each suspect has its container, and the rest are smaller
            for item in newest_items(obj, SAMPLE_ITEMS):
                # Items are often shared (one constant in a million slots, one class in every
                # namespace): each is looked at once. They stay alive in `objects`, so ids are stable.
                reached = looked_at.get(id(item))
                if reached is None:
                    reached = looked_at[id(item)] = _leads_to(item, self.wanted, self.innermost)
                for index in reached:
                    held = self.points.get(index)
                    if held is None or len(obj) > len(held):
                        self._point(index, "items", obj)
                if reached:
                    break

    def site_objects(self, objects: list[Any]) -> None:
        """Objects allocated at a suspect's site, or containers whose item buffer was: tracked
        ones first, then the untracked objects (strings, numbers, dicts of such) they refer to.
        In C (_objtrace.scan: a lookup per object, no Python object made per object), for what
        is left, in at most half of what is left of the budget: the walks need time too."""
        for untracked in (False, True):
            remaining = self.remaining()
            if not remaining:
                return
            wanted = {key: index for key, index in self.wanted.items() if index in remaining}
            share = max(0.0, self.budget.deadline - time.perf_counter()) / 2
            found, looked_at = scan(objects, wanted, untracked, time.monotonic() + share)
            self.scanned += looked_at
            for index, (count, newest, owner) in found.items():
                self.hits[index] += count
                if newest is not None:
                    self._point(index, "objects", newest)
                elif owner is not None:
                    self._point(index, "buffer", owner)
            if looked_at < len(objects):
                self.complete = False
                return

    def _point(self, index: int, method: str, obj: Any) -> None:
        self.points[index] = obj
        self.methods[index] = method


def _anchor(route: Route, start: Any) -> Any:
    """The object whose allocation made the leak: the newest item of a registry (the Logger,
    not the registry made at import), or the unreferenced object at the top of a leaked chain."""
    if route.kind == "unreachable":
        return route.chain[-1]
    holder = _holder(route, start)
    items = newest_items(holder, 1) if length_of(holder) else []
    return items[0] if items else start


def _holder(route: Route, start: Any) -> Any:
    """The big container nearest the root: the registry the items pile up in (a Logger's cache
    is held by the Logger, and the Logger by `loggerDict`: the registry is the latter). Not a
    namespace on the way (a class's or an instance's attributes)."""
    chain = route.chain
    for place in range(len(chain) - 1, -1, -1):
        obj = chain[place]
        above = chain[place + 1] if place + 1 < len(chain) else None
        if isinstance(obj, dict) and (isinstance(above, type) or getattr(above, "__dict__", None) is obj):
            continue
        length = length_of(obj)
        if length is not None and length >= MIN_CONTAINER_LEN:
            return obj
    return start


def _created_at(obj: Any) -> list[list[Any]]:
    key = _key_of(obj)
    if not key:
        return []
    described = tracing.describe(key)
    return [[file, line, *described.get((file, line), ("", ""))] for file, line in reversed(key)]


def _answer(walker: Walk, method: str, start: Any) -> dict[str, Any]:
    route = walker.route(start)
    holder = _holder(route, start)
    reachable = route.kind == "reachable"
    anchor = _anchor(route, start)
    created_at = _created_at(anchor) if route.kind != "unknown" else []
    # One registry is one object; leaked references are one per request, each its own object:
    # those are one root when made by the same code, so they group by type and allocation site.
    if reachable:
        group: str | None = f"holder {id(holder)}"
    elif route.kind == "unreachable":
        made = created_at[-1][:2] if created_at else "?"
        group = f"unreferenced {type_name(anchor)} at {made}"
    else:
        group = None
    return {
        "kind": route.kind,
        "found": route.kind in ("reachable", "unreachable"),
        "method": method,
        "root": route.root,
        "steps": route.steps(),
        "holder": f"{route.expression_of(holder)} ({describe_holder(holder)})" if reachable else "",
        "group": group,
        "created_at": created_at,
        "held": {"type": type_name(start), "length": length_of(start), "size": size_of(start)},
        "truncated": route.truncated,
        "note": route.note,
    }


def _frozen_note(frozen: int) -> str:
    return (
        f"{frozen:,} objects are frozen (gc.freeze()), unseen by the search in the target; "
        "a search in a forked child (fork=true) sees them"
    )


def find_retention(
    suspects: list[dict[str, Any]],
    *,
    max_seconds: float = 10.0,
    max_depth: int = 40,
    collect: bool = True,
    in_child: bool = False,
) -> dict[str, Any]:
    """`suspects`: [{"traceback": [[file, line], ...] innermost last, "live_bytes": int}].
    `collect`: collect garbage first (a forked child must not: the caller did, before the fork).
    `in_child`: in a forked child, which may change the collector's state for good."""
    if not tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is not tracing in the target")
    started = time.perf_counter()
    budget = Budget(max_seconds)
    asked = suspects[:MAX_SUSPECTS]
    if collect:
        gc.collect()
    # Objects an app froze (gc.freeze(), as preforking servers' apps do) are in no generation:
    # neither listed nor looked at for referrers. A child thaws them; the target itself must not
    # (its collections would walk them again), so there "nothing refers to it" is not known.
    frozen = max(0, gc.get_freeze_count() - FROZEN_AT_IMPORT)
    if frozen and in_child:
        gc.unfreeze()
        frozen = 0
    objects = gc.get_objects()
    search = _Search(asked, budget)
    search.containers(objects)
    search.site_objects(objects)
    running = running_frames(objects)
    points = search.points
    # `objects` refers to everything: kept (its items are alive anyway) and never a referrer.
    walker = Walk({id(objects), id(search), id(points), id(asked), id(suspects)}, budget, max_depth, running)
    try:
        answers = _answers(walker, search, asked, points, frozen)
    finally:
        walker.close()
    return {
        "suspects": answers,
        "scanned_objects": search.scanned,
        "seconds": time.perf_counter() - started,
        "truncated": budget.spent,
    }


def _answers(
    walker: Walk, search: _Search, asked: list[dict[str, Any]], points: dict[int, Any], frozen: int
) -> list[dict[str, Any]]:
    budget = search.budget
    answers = []
    for index, suspect in enumerate(asked):
        answer: dict[str, Any] = {"traceback": suspect["traceback"], "objects": search.hits.get(index, 0)}
        if index in points:
            answer.update(_answer(walker, search.methods[index], points[index]))
            if frozen and answer["kind"] == "unreachable":
                answer.update(kind="unknown", found=False, group=None, note=_frozen_note(frozen))
        else:
            complete = search.complete and not budget.spent and not frozen
            answer.update(
                kind="raw" if complete else "unknown",
                found=False,
                method="none",
                root="",
                steps=[],
                holder="",
                group=None,
                created_at=[],
                held={},
                truncated=not complete,
                note=_RAW_NOTE
                if complete
                else _frozen_note(frozen)
                if frozen
                else "search stopped by its time budget",
            )
        answers.append(answer)
    return answers
