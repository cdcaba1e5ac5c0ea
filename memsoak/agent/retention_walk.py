"""From an accumulation point up to what keeps it alive (memsoak/agent/retention.py finds the point).

A walk follows referrers (`gc.get_referrers`) from the object in which a suspect's memory piles up
until it meets a root a person can act on: a module global (any module in `sys.modules`, a
library's registry included), a class attribute, a thread or greenlet local, a local of a
running function. Or until there is no referrer at all: then no object the collector tracks
refers to it, which for an object nobody frees is a reference leaked by C code (a missing DECREF).

A running function's locals are invisible to `gc.get_referrers`: CPython 3.11 keeps them in the
thread's (or the suspended greenlet's) own frame memory, and a frame object shows its locals to
the collector only once the function has returned. So the walk first takes every running frame,
each thread's stack and each suspended greenlet's (`running_frames`), and the ids of their locals:
an object among those is a running function's local, a root. A frame object not among them
belongs to a function that has returned and is kept by something else (a traceback, a generator),
and is walked through. An object a running function holds that something else refers to as well
is walked through too, for a root a person can act on; but where that way ends with no referrer,
the running function's local is the root. The way ends like that at a bound method or an argument
tuple of a call in progress (only the C stack holds them; CPython does not show a running frame's
value stack to the collector): asyncio's event loop, a local of `run_forever`, reached through
the bound method its `_run_once` is, is no reference leaked by C code.

Walks share their routes: a walk that meets an object an earlier walk went through takes the
rest of that route, so suspects kept by one registry cost one walk, and are known to share it.
"""

from __future__ import annotations

import collections
import gc
import os
import sys
import time
import types
from dataclasses import dataclass
from typing import Any

from memsoak.agent import tracing

MIN_CONTAINER_LEN = 16
CONTAINERS = (list, dict, set, frozenset, collections.deque, collections.OrderedDict)
_SEQUENCES = (list, tuple, set, frozenset, collections.deque)
_ITEMS_NAMED = 16  # newest items whose type names a holder's contents


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds
        self.spent = False

    def over(self) -> bool:
        if not self.spent and time.perf_counter() > self.deadline:
            self.spent = True
        return self.spent


def size_of(obj: Any) -> int:
    try:
        return sys.getsizeof(obj)
    except TypeError:
        return 0


def length_of(obj: Any) -> int | None:
    try:
        return len(obj) if isinstance(obj, CONTAINERS) else None
    except TypeError:
        return None


def type_name(obj: Any) -> str:
    kind = type(obj)
    if isinstance(obj, types.FunctionType):
        return f"function {obj.__qualname__}"
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def newest_items(container: Any, count: int) -> list[Any]:
    """The last `count` items (a dict's values; its keys after them), newest first."""
    try:
        if isinstance(container, dict):
            values, keys = [], []
            for key in reversed(container):
                values.append(container[key])
                keys.append(key)
                if len(values) >= count:
                    break
            return values + keys
        if isinstance(container, list):
            return container[-count:][::-1]
        if isinstance(container, collections.deque):
            return [container[-1 - n] for n in range(min(count, len(container)))]
        return [item for _, item in zip(range(count), container, strict=False)]
    except (RuntimeError, KeyError, TypeError, IndexError):  # changed under us, or refuses
        return []


def describe(obj: Any) -> str:
    length = length_of(obj)
    return f"{type_name(obj)} of {length:,} items" if length is not None else type_name(obj)


def describe_holder(obj: Any) -> str:
    """ "dict of 3,200 Logger": the container, its length and what it mostly holds."""
    length = length_of(obj)
    if length is None:
        return type_name(obj)
    items = newest_items(obj, _ITEMS_NAMED)[:_ITEMS_NAMED]
    held = collections.Counter(type(item).__qualname__ for item in items).most_common(1)
    return f"{type(obj).__qualname__} of {length:,}" + (f" {held[0][0]}" if held else " items")


def _key_for(mapping: dict[Any, Any], child: Any) -> Any:
    for key, value in list(mapping.items())[:100_000]:
        if value is child or key is child:
            return key
    return None


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else repr(key)[:80]


def _index_in(sequence: Any, child: Any) -> int | None:
    if isinstance(sequence, list | tuple):
        for index, item in enumerate(sequence[:100_000]):
            if item is child:
                return index
    return None


def _attribute(parent: Any, child: Any) -> tuple[str, str]:
    """(label, expression) of the attribute of `parent` that holds `child`: instance attributes
    (3.11 keeps them inline, without a dict object) and the usual slots of partials and such."""
    namespace = getattr(parent, "__dict__", None)
    if isinstance(namespace, dict):
        name = _key_for(namespace, child)
        if isinstance(name, str):
            return f".{name}", f".{name}"
    for name in ("args", "func", "keywords", "__wrapped__", "__defaults__", "__kwdefaults__"):
        try:
            if getattr(parent, name, None) is child:
                return f".{name}", f".{name}"
        except Exception:  # noqa: BLE001 - a property of the app's may raise anything
            continue
    if type(parent).__name__ == "_lru_cache_wrapper":
        return "its cache", ".cache"
    return "referent", "[...]"


# Ids of the dicts `frame.f_locals` made: the frame keeps one, and it refers to every local; a
# walk must not mistake it for a container of the app's.
_locals_dicts: set[int] = set()
_locals_copies: list[dict[str, Any]] = []


def locals_of(frame: types.FrameType) -> dict[str, Any]:
    try:
        found = frame.f_locals
        if not isinstance(found, dict):
            # 3.13 gives a running function's locals as a write-through proxy (PEP 667): a copy,
            # kept until the walk closes so that its id names no other object meanwhile.
            found = dict(found)
            _locals_copies.append(found)
    except Exception:  # noqa: BLE001 - a frame's locals may be anything
        return {}
    _locals_dicts.add(id(found))
    return found


def _frame_local(frame: types.FrameType, child: Any) -> tuple[str, str]:
    name = _key_for(locals_of(frame), child)
    return (f"local {name}", name) if isinstance(name, str) else ("referent", "[...]")


def _edge(parent: Any, child: Any, after: Any) -> tuple[str, str, int]:
    """(label, expression, objects the edge spans) from `parent` to `child`; 2 when it names
    `after` through `child` (a namespace dict, a closure's cells)."""
    if isinstance(parent, types.TracebackType):
        return ("tb_frame", ".tb_frame", 1) if parent.tb_frame is child else ("tb_next", ".tb_next", 1)
    if isinstance(parent, types.FrameType):
        if parent.f_back is child:
            return "f_back (the caller)", ".f_back", 1
        label, expression = _frame_local(parent, child)
        return label, expression, 1
    if isinstance(parent, dict):
        key = _key_for(parent, child)
        text = "?" if key is None and child is not None else _key_text(key)
        if key is child:
            return f"key {text}", f"[key {text}]", 1
        return f"[{text}]", f"[{key!r}]", 1
    if isinstance(parent, type) and isinstance(child, dict) and after is not None:
        name = _key_for(child, after)
        return f"attribute {name}", f".{name}", 2
    if (
        isinstance(parent, types.FunctionType)
        and parent.__closure__ is child
        and isinstance(after, types.CellType)
    ):
        cells = parent.__closure__
        index = next((n for n, cell in enumerate(cells) if cell is after), -1)
        name = parent.__code__.co_freevars[index] if 0 <= index < len(cells) else "?"
        return f"closure variable {name}", f".<closure {name}>", 2
    if isinstance(parent, types.CellType):
        return "cell contents", "", 1
    namespace = getattr(parent, "__dict__", None)
    if isinstance(child, dict) and after is not None and namespace is child:
        attribute = _key_for(namespace, after)
        return f".{attribute}", f".{attribute}", 2
    if isinstance(parent, types.MethodType):
        return ("__self__", ".__self__", 1) if parent.__self__ is child else ("__func__", ".__func__", 1)
    if isinstance(parent, _SEQUENCES):
        position = _index_in(parent, child)
        return "item", f"[{position if position is not None else '...'}]", 1
    label, expression = _attribute(parent, child)
    return label, expression, 1


def edges(chain: list[Any]) -> list[tuple[str, str, int]]:
    """Edges from `chain[0]` down to `chain[-1]`: (label with what it reaches, expression,
    index in `chain` of the object reached)."""
    found = []
    i = 0
    while i < len(chain) - 1:
        after = chain[i + 2] if i + 2 < len(chain) else None
        label, expression, skip = _edge(chain[i], chain[i + 1], after)
        i += skip
        found.append((f"{label} ({describe(chain[i])})", expression, i))
    return found


def running_frames(objects: list[Any]) -> dict[int, types.FrameType]:
    """Frame objects of every function still running: each thread's stack and each suspended
    greenlet's (`objects`: the live tracked objects, where the greenlets are)."""
    tops: list[types.FrameType | None] = list(sys._current_frames().values())
    greenlet = getattr(sys.modules.get("greenlet"), "greenlet", None)
    if isinstance(greenlet, type):
        for candidate in objects:
            if isinstance(candidate, greenlet):
                tops.append(getattr(candidate, "gr_frame", None))
    frames: dict[int, types.FrameType] = {}
    for top in tops:
        frame = top
        while frame is not None and id(frame) not in frames:
            if not _is_ours(frame):
                frames[id(frame)] = frame
            frame = frame.f_back
    # This function's frame is an object now, and holds `objects`: dropping every reference to
    # it here lets it go at return (a cycle through it would outlive the search, as the forked
    # child collects nothing).
    del tops, top, frame
    return frames


_HERE = os.path.dirname(os.path.abspath(__file__))
# The search's own code, and the forked child's that runs it.
_OURS = frozenset(os.path.join(_HERE, name) for name in ("retention.py", "retention_walk.py", "forked.py"))


def _is_ours(frame: types.FrameType) -> bool:
    """A frame of the search's own: never a root, never a referrer."""
    return frame.f_code.co_filename in _OURS


def _is_user_module(module: types.ModuleType) -> bool:
    file = getattr(module, "__file__", None)
    return isinstance(file, str) and not file.startswith(tracing.library_files()) and os.path.isabs(file)


@dataclass
class Route:
    """Where a walk ended. `chain`: from the walk's start up to the topmost object the root
    holds (or the root itself when it is an object: a class, a local, a frame), start first.
    `base`: how a developer names `chain[-1]`; `head`: the label of the root's edge into it, when
    the root is a namespace rather than an object of the chain ("global users_list (...)")."""

    kind: str  # "reachable", "unreachable", "unknown"
    root: str
    chain: list[Any]
    base: str = ""
    head: str | None = None
    truncated: bool = False
    note: str = ""

    def steps(self) -> list[str]:
        labels = [label for label, _, _ in edges(self.chain[::-1])]
        return [self.head, *labels] if self.head else labels

    def expression_of(self, target: Any) -> str:
        """How a developer reaches `target` (an object of `chain`) from the root:
        "logging.Logger.manager.loggerDict", "hits._metrics"."""
        down = self.chain[::-1]
        text = self.base
        if not down or down[0] is target:
            return text
        for _, expression, index in edges(down):
            text += expression
            if down[index] is target:
                break
        return text


class Walk:
    def __init__(self, ignore: set[int], budget: Budget, max_depth: int, running: dict[int, Any]) -> None:
        self.ignore = ignore
        self.budget = budget
        self.max_depth = max_depth
        self.running = running
        # id of a running function's local -> that function's frame.
        _locals_dicts.clear()
        _locals_copies.clear()
        self.locals: dict[int, types.FrameType] = {}
        for frame in running.values():
            for value in list(locals_of(frame).values()):
                self.locals.setdefault(id(value), frame)
        self.module_dicts = {id(vars(m)): m for m in list(sys.modules.values()) if m is not None}
        # Objects earlier walks went through: (their route, their place in its chain).
        self.known: dict[int, tuple[Route, int]] = {}
        # The walk's own tables refer to what it walks: never a referrer.
        self.ignore |= {id(running), id(self.known), id(self.module_dicts), id(self.locals)}

    def close(self) -> None:
        """Let go of what the walks held: the locals' copies refer to every running function's
        locals, which would outlive the search in a target."""
        _locals_dicts.clear()
        _locals_copies.clear()
        self.locals.clear()
        self.known.clear()

    def _referrers(self, obj: Any, chain: list[Any]) -> list[Any]:
        seen = {id(c) for c in chain}
        return [
            r
            for r in gc.get_referrers(obj)
            if id(r) not in self.ignore
            and id(r) not in _locals_dicts
            and id(r) not in seen
            and r is not chain
            and not (isinstance(r, types.FrameType) and _is_ours(r))
        ]

    def route(self, start: Any) -> Route:
        chain = [start]
        found = self._walk(chain)
        self.ignore |= {id(chain), id(found.chain)}
        for place, obj in enumerate(found.chain):
            self.known.setdefault(id(obj), (found, place))
        return found

    def _walk(self, chain: list[Any]) -> Route:
        # The first object on the way up that a running function holds as a local, though other
        # objects refer to it too: the root to fall back on where the way up ends with nothing
        # the collector tracks (as it does at a bound method or tuple passed to a call still in
        # progress, which only the C stack holds: no leak), or at the depth bound.
        held_by_running: Route | None = None
        for _ in range(self.max_depth):
            current = chain[-1]
            if held_by_running is None and id(current) in self.locals:
                held_by_running = self._running_local(self.locals[id(current)], current, list(chain))
            known = self.known.get(id(current))
            if known is not None and known[0].kind != "unknown":
                earlier, place = known
                return Route(
                    earlier.kind, earlier.root, chain[:-1] + earlier.chain[place:], earlier.base,
                    earlier.head, note=earlier.note,
                )  # fmt: skip
            if self.budget.over():
                return Route("unknown", "(search stopped: time budget)", chain, truncated=True)
            referrers = self._referrers(current, chain)
            found = self._root_among(referrers, current, chain)
            if found is not None:
                return found
            alive = [r for r in referrers if id(r) not in self.running]
            if not alive and held_by_running is not None:
                return held_by_running
            if not alive:
                return Route(
                    "unreachable", f"unreferenced {type_name(current)}", chain,
                    base=f"<unreferenced {type(current).__qualname__}>",
                    note="no object the garbage collector tracks refers to it: a reference leaked by C code",
                )  # fmt: skip
            chain.append(self._pick(alive, chain))
            del referrers, alive
        if held_by_running is not None:
            return held_by_running
        return Route("unknown", "(search stopped: depth bound)", chain, truncated=True)

    def _running_local(self, frame: types.FrameType, current: Any, chain: list[Any]) -> Route:
        code = frame.f_code
        root = f"a local of running function {code.co_qualname} ({code.co_filename}:{frame.f_lineno})"
        name = _frame_local(frame, current)[1]
        return Route("reachable", root, chain, name, f"local {name} ({describe(current)})")

    def _root_among(self, referrers: list[Any], current: Any, chain: list[Any]) -> Route | None:
        if isinstance(current, types.ModuleType):  # held by sys.modules, or as a module's global
            return Route("reachable", f"module {current.__name__}", chain, current.__name__)
        for referrer in referrers:
            module = self.module_dicts.get(id(referrer))
            if module is not None and isinstance(referrer, dict):
                # A module's namespace: the root a person can act on.
                name = _key_text(_key_for(referrer, current))
                prefix = "" if _is_user_module(module) else f"{module.__name__}."
                head = f"global {name} ({describe(current)})"
                return Route("reachable", f"module {module.__name__}", chain, f"{prefix}{name}", head)
        for referrer in referrers:
            if isinstance(referrer, type):
                module = sys.modules.get(referrer.__module__)
                owner = "" if module is None or _is_user_module(module) else f"{referrer.__module__}."
                root = f"class {referrer.__module__}.{referrer.__qualname__}"
                return Route("reachable", root, [*chain, referrer], f"{owner}{referrer.__qualname__}")
            if "local" in type(referrer).__name__.lower() and not isinstance(referrer, types.FrameType):
                root = f"thread/greenlet local {type_name(referrer)}"
                return Route("reachable", root, [*chain, referrer], f"<{type_name(referrer)}>")
        frame = self.locals.get(id(current))
        if frame is not None and not any(id(r) not in self.running for r in referrers):
            # Only a running function holds it (and perhaps its callers' frames).
            return self._running_local(frame, current, chain)
        return None

    @staticmethod
    def _pick(referrers: list[Any], chain: list[Any]) -> Any:
        """Follow the referrer most likely to lead to a root: a leaked traceback's chain, then
        instance namespaces, closures and containers before the odd tuple a running call made.
        Last, a bound method of an object already on the way: the object keeps it as an
        attribute (werkzeug's Rule its builders), and past it the way only comes back."""
        on_the_way = {id(obj) for obj in chain}

        def rank(obj: Any) -> int:
            if isinstance(obj, types.MethodType) and id(obj.__self__) in on_the_way:
                return 7
            if isinstance(obj, types.TracebackType):
                return 0
            if isinstance(obj, types.CellType | types.FunctionType | types.MethodType):
                return 1
            if isinstance(obj, types.FrameType):  # a returned function's, kept by a traceback
                return 2
            if isinstance(obj, dict):
                return 3
            if isinstance(obj, list | set | collections.deque):
                return 4
            if isinstance(obj, tuple):
                return 6
            return 5

        return min(referrers, key=rank)
