"""What keeps a leak suspect alive, found inside the target (like Eclipse MAT's "Leak Suspects").

Given a suspect's traceback, find its accumulation point, the live object in which the memory
piles up, and walk referrers from it up to a root: a module global, a class attribute, a thread or
greenlet local, or a running frame. The accumulation point is, in order of preference:

1. "items": a container (list, dict, set, deque, ...) whose items, or the objects those items
   hold one or two references down, were allocated at the suspect's traceback (a cache dict, a
   registry list). Found by sampling the newest items of every large container.
2. "objects": an object allocated at the suspect's traceback (`tracemalloc.get_object_traceback`
   over gc-tracked objects); the walk starts from the newest one.
3. "size": a container whose own buffer is about as big as the suspect's live size (the seed's
   list grows its item array at the suspect's line, but the list itself was made elsewhere).

Bounded: one pass over `gc.get_objects()`, a few referents per sampled item, `max_depth` referrer
steps per suspect, and a time budget after which it answers with what it has (`truncated`).
The answer is plain JSON (analysis/retention.py documents and reads it).
"""

from __future__ import annotations

import collections
import gc
import itertools
import sys
import time
import tracemalloc
import types
from typing import Any

MAX_SUSPECTS = 5
SAMPLE_ITEMS = 4  # newest items of a container looked at
SAMPLE_REFERENTS = 4  # referents of each sampled item looked at, per level
MIN_CONTAINER_LEN = 16
_CONTAINERS = (list, dict, set, frozenset, collections.deque, collections.OrderedDict)
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


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds
        self.spent = False

    def over(self) -> bool:
        if not self.spent and time.perf_counter() > self.deadline:
            self.spent = True
        return self.spent


# The raw form of `tracemalloc.get_object_traceback`: a tuple of (file, line), innermost FIRST.
# One C call and no objects built per object looked at: this runs over every live object in a
# target where tracemalloc makes each Python-level allocation many times dearer.
_raw_traceback = getattr(tracemalloc, "_get_object_traceback", None)


def _key_of(obj: Any) -> SiteKey | None:
    if _raw_traceback is not None:
        raw: SiteKey | None = _raw_traceback(obj)
        return raw
    traceback = tracemalloc.get_object_traceback(obj)
    if traceback is None:
        return None
    return tuple((frame.filename, frame.lineno) for frame in reversed(traceback))


def _newest_items(container: Any) -> list[Any]:
    try:
        if isinstance(container, dict):
            items: list[Any] = []
            for key in reversed(container):
                items.append(container[key])
                items.append(key)
                if len(items) >= 2 * SAMPLE_ITEMS:
                    break
            return items
        if isinstance(container, list):
            return container[-SAMPLE_ITEMS:]
        if isinstance(container, collections.deque):
            return list(itertools.islice(reversed(container), SAMPLE_ITEMS))
        return [item for _, item in zip(range(SAMPLE_ITEMS), container, strict=False)]
    except (RuntimeError, KeyError, TypeError):  # changed under us, or a dict subclass that refuses
        return []


def _containers(objects: list[Any]) -> list[Any]:
    """Containers of MIN_CONTAINER_LEN items or more, biggest first: a leak's accumulation point
    holds an item per request or more, so it is met early when the time budget is short."""
    found = []
    for obj in objects:
        if isinstance(obj, _CONTAINERS):
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
            if isinstance(obj, _CONTAINERS) and len(obj) > SAMPLE_REFERENTS:
                continue  # a container of its own: looked at in its own right
            following.extend(gc.get_referents(obj)[:SAMPLE_REFERENTS])
        level = following
    return reached


def _size(obj: Any) -> int:
    try:
        return sys.getsizeof(obj)
    except TypeError:
        return 0


def _length(obj: Any) -> int | None:
    try:
        return len(obj) if isinstance(obj, _CONTAINERS) else None
    except TypeError:
        return None


def _type_name(obj: Any) -> str:
    kind = type(obj)
    name = kind.__qualname__
    if isinstance(obj, types.FunctionType):
        return f"function {obj.__qualname__}"
    return name if kind.__module__ == "builtins" else f"{kind.__module__}.{name}"


def _key_for(mapping: dict[Any, Any], child: Any) -> str:
    for key, value in list(mapping.items())[:100_000]:
        if value is child:
            return str(key) if isinstance(key, str) else repr(key)
        if key is child:
            return f"key {key!r}"[:80]
    return "?"


def _describe(obj: Any) -> str:
    length = _length(obj)
    return f"{_type_name(obj)} of {length:,} items" if length is not None else _type_name(obj)


def _attribute_label(parent: Any, child: Any) -> str:
    """The attribute of `parent` that holds `child`: instance attributes (3.11 keeps them inline,
    without a dict object) and the usual slots of partials and the like."""
    namespace = getattr(parent, "__dict__", None)
    if isinstance(namespace, dict):
        name = _key_for(namespace, child)
        if name != "?":
            return f".{name}"
    for name in ("args", "func", "keywords", "__wrapped__", "__defaults__", "__kwdefaults__"):
        try:
            if getattr(parent, name, None) is child:
                return f".{name}"
        except Exception:  # noqa: BLE001 - a property of the app's may raise anything
            continue
    if type(parent).__name__ == "_lru_cache_wrapper":
        return "its cache"
    return "referent"


def _labels(chain: list[Any]) -> list[str]:
    """Edges from the root container `chain[0]` down to `chain[-1]`, in words, each with what it
    reaches: "global bus (EventBus)", ".listeners (list of 1,100 items)", "item (function f)"."""
    steps: list[str] = []
    i = 0
    while i < len(chain) - 1:
        parent, child = chain[i], chain[i + 1]
        after: Any = chain[i + 2] if i + 2 < len(chain) else None
        skip = 1
        if isinstance(parent, dict):
            label = f"[{_key_for(parent, child)}]"
        elif isinstance(parent, type) and isinstance(child, dict) and after is not None:
            label, skip = f"attribute {_key_for(child, after)}", 2
        elif (
            isinstance(parent, types.FunctionType)
            and parent.__closure__ is not None
            and parent.__closure__ is child
            and isinstance(after, types.CellType)
        ):
            cells = parent.__closure__
            index = next((n for n, cell in enumerate(cells) if cell is after), -1)
            name = parent.__code__.co_freevars[index] if 0 <= index < len(cells) else "?"
            label, skip = f"closure variable {name}", 2
        elif isinstance(parent, types.CellType):
            label = "cell contents"
        elif isinstance(child, dict) and after is not None and getattr(parent, "__dict__", None) is child:
            label, skip = f".{_key_for(chain[i + 1], after)}", 2
        elif isinstance(parent, types.MethodType):
            label = "__self__" if parent.__self__ is child else "__func__"
        elif isinstance(parent, list | tuple | set | frozenset | collections.deque):
            label = "item"
        else:
            label = _attribute_label(parent, child)
        i += skip
        steps.append(f"{label} ({_describe(chain[i])})")
    return steps


class _Walk:
    def __init__(self, ignore: set[int], budget: _Budget, max_depth: int) -> None:
        self.ignore = ignore
        self.budget = budget
        self.max_depth = max_depth
        self.module_dicts = {id(vars(m)): name for name, m in list(sys.modules.items()) if m is not None}

    def _referrers(self, obj: Any, chain: list[Any]) -> list[Any]:
        seen = {id(c) for c in chain}
        found = []
        for referrer in gc.get_referrers(obj):
            if (
                id(referrer) in self.ignore
                or id(referrer) in seen
                or referrer is chain
                or isinstance(referrer, types.FrameType)
            ):
                continue
            found.append(referrer)
        return found

    def root_path(self, start: Any) -> tuple[str, list[str], bool]:
        """(root, steps from the root down to `start`, truncated)."""
        chain = [start]  # upwards for now: start first
        for _ in range(self.max_depth):
            if self.budget.over():
                return "(search stopped: time budget)", _labels(chain[::-1]), True
            current = chain[-1]
            referrers = self._referrers(current, chain)
            root = None
            for referrer in referrers:
                module = self.module_dicts.get(id(referrer))
                if module is not None and isinstance(referrer, dict):
                    # A module's namespace: the root a person can act on.
                    name = _key_for(referrer, current)
                    steps = _labels(chain[::-1])
                    return f"module {module}", [f"global {name} ({_describe(current)})", *steps], False
            for referrer in referrers:
                if isinstance(referrer, type):
                    root = f"class {referrer.__module__}.{referrer.__qualname__}"
                elif "local" in type(referrer).__name__.lower():
                    root = f"thread/greenlet local {_type_name(referrer)}"
                if root:
                    chain.append(referrer)
                    labels = _labels(chain[::-1])
                    return root, labels, False
            if not referrers:
                root = "(no referrer outside running frames: a local of a running function)"
                return root, _labels(chain[::-1]), False
            chain.append(self._pick(referrers))
            del referrers
        return "(search stopped: depth bound)", _labels(chain[::-1]), True

    @staticmethod
    def _pick(referrers: list[Any]) -> Any:
        """Follow the referrer most likely to lead to a root: instance namespaces, closures and
        containers before the odd tuple a running call made."""

        def rank(obj: Any) -> int:
            if isinstance(obj, types.CellType | types.FunctionType | types.MethodType):
                return 0
            if isinstance(obj, dict):
                return 1
            if isinstance(obj, list | set | collections.deque):
                return 2
            if isinstance(obj, tuple):
                return 4
            return 3

        return min(referrers, key=rank)


def find_retention(
    suspects: list[dict[str, Any]], *, max_seconds: float = 10.0, max_depth: int = 12, collect: bool = True
) -> dict[str, Any]:
    """`suspects`: [{"traceback": [[file, line], ...] innermost last, "live_bytes": int}].
    `collect`: collect garbage first (a forked child must not: the caller did, before the fork)."""
    if not tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is not tracing in the target")
    started = time.perf_counter()
    budget = _Budget(max_seconds)
    wanted: dict[SiteKey, int] = {}  # innermost frame first, as `_key_of` gives them
    for index, suspect in enumerate(suspects[:MAX_SUSPECTS]):
        wanted.setdefault(tuple((file, line) for file, line in reversed(suspect["traceback"])), index)
    innermost = {key[0] for key in wanted if key}
    if collect:
        gc.collect()
    objects = gc.get_objects()
    holders: dict[int, Any] = {}  # suspect -> container whose items came from it (largest)
    newest_hit: dict[int, Any] = {}
    hits: collections.Counter[int] = collections.Counter()
    scanned = 0
    looked_at: dict[int, set[int]] = {}
    # Pass 1, containers: only a few items of each are looked up, so it is cheap. A dict holding
    # only strings and numbers is not tracked by the collector (so not in `objects`): such dicts
    # are found as values of the tracked dicts (module and instance namespaces) that hold them.
    containers = _containers(objects)
    for obj in containers:
        scanned += 1
        if not scanned & 255 and budget.over():
            break
        if len(holders) == len(wanted):
            break  # each suspect has its container, and the rest are smaller
        for item in _newest_items(obj):
            # Items are often shared (one constant in a million slots, one class in every
            # namespace): each is looked at once. They stay alive in `objects`, so ids are stable.
            reached = looked_at.get(id(item))
            if reached is None:
                reached = looked_at[id(item)] = _leads_to(item, wanted, innermost)
            for index in reached:
                if index not in holders or len(obj) > len(holders[index]):
                    holders[index] = obj
            if reached:
                break
    # Pass 2, a container whose own buffer is about the suspect's live size (within 2x): the
    # seed's list grows its item array at the suspect's line though the list was made elsewhere.
    by_size: dict[int, Any] = {}
    sized = {
        index: int(suspect.get("live_bytes") or 0)
        for index, suspect in enumerate(suspects[:MAX_SUSPECTS])
        if index not in holders and int(suspect.get("live_bytes") or 0) > 0
    }
    if sized:
        best_gap = dict.fromkeys(sized, 1.0)
        for obj in objects:
            if isinstance(obj, _CONTAINERS):
                size = _size(obj)
                for index, live in sized.items():
                    gap = abs(size - live) / live
                    if gap < best_gap[index] and size * 2 >= live:
                        by_size[index], best_gap[index] = obj, gap
    # Pass 3, objects allocated at a suspect's site, for suspects nothing above explained. Each
    # lookup builds a traceback under tracemalloc (~20 us), hence last and under the budget.
    remaining = set(wanted.values()) - set(holders) - set(by_size)
    scan_truncated = False
    if remaining:
        # Half of what is left at most: the walks to a root need time too.
        scan_budget = _Budget(max(0.0, budget.deadline - time.perf_counter()) / 2)
        for obj in objects:
            scanned += 1
            if not scanned & 1023 and scan_budget.over():
                scan_truncated = True
                break
            key = _key_of(obj)
            if key and key[0] in innermost:
                found = wanted.get(key)
                if found is not None and found in remaining:
                    hits[found] += 1
                    newest_hit[found] = obj
    del objects, containers
    walker = _Walk({id(holders), id(newest_hit), id(by_size), id(suspects)}, budget, max_depth)
    answers = []
    for index, suspect in enumerate(suspects[:MAX_SUSPECTS]):
        answer: dict[str, Any] = {"traceback": suspect["traceback"], "objects": hits.get(index, 0)}
        for method, table in (("items", holders), ("size", by_size), ("objects", newest_hit)):
            if index in table:
                held = table[index]
                root, steps, truncated = walker.root_path(held)
                answer.update(
                    found=not root.startswith("("),
                    method=method,
                    root=root,
                    steps=steps,
                    held={"type": _type_name(held), "length": _length(held), "size": _size(held)},
                    truncated=truncated,
                    note="" if method != "size" else "matched by buffer size, not by item origin",
                )
                break
        else:
            answer.update(
                found=False,
                method="none",
                root="",
                steps=[],
                held={},
                truncated=budget.spent or scan_truncated,
                note="search stopped by its time budget"
                if budget.spent or scan_truncated
                else "no live container or object traced to this site (its objects may not be "
                "tracked by the garbage collector)",
            )
        answers.append(answer)
    return {
        "suspects": answers,
        "scanned_objects": scanned,
        "seconds": time.perf_counter() - started,
        "truncated": budget.spent,
    }
