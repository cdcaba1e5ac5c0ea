"""An exact request budget for Locust users: one token per request, handed out by a gate.

Locust has no request limit of its own, and quitting after a count overshoots by whatever is in
flight. The gate instead refuses the (N+1)th token. It also stops handing out tokens at each
boundary (end of warm-up, each checkpoint, the end), waits until every request in flight has
finished, and only then runs the boundary's action (a snapshot), so a snapshot sees exactly the
requests it claims to. Users block in `acquire` meanwhile.

A time-bound soak has no budget: the gate is `open_ended` (tokens flow without limit after the
last boundary) and a clock calls `drain(action)` at each checkpoint, which pauses the gate at
whatever count it has reached, the same way a boundary does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import gevent
from gevent.event import Event


class BudgetSpent(Exception):
    """No token left: the user holding this should stop."""


class RequestGate:
    def __init__(
        self,
        boundaries: Sequence[int],
        on_boundary: Callable[[int], None],
        *,
        open_ended: bool = False,
    ) -> None:
        """`boundaries`: strictly increasing request counts; the last one is the budget, unless
        `open_ended`, when requests go on after it until `close()`.
        `on_boundary(count)` runs in its own greenlet once `count` requests have all completed."""
        if not boundaries or any(b <= a for a, b in itertools.pairwise(boundaries)):
            raise ValueError(f"boundaries must be strictly increasing, got {list(boundaries)}")
        if boundaries[0] < 0:
            raise ValueError("boundaries must not be negative")
        self._boundaries = list(boundaries)
        self._on_boundary = on_boundary
        self.open_ended = open_ended
        self._next = 0  # index of the boundary being worked towards
        self.issued = 0
        self.completed = 0
        self.in_flight = 0
        self.closed = False
        self._actions: dict[object, int] = {}  # greenlet -> the boundary whose action it runs
        self._draining: object = None  # the greenlet in `drain`, if any
        self._open = Event()
        self._open.set()
        self._idle = Event()  # set while no request is in flight
        self._idle.set()
        if self._boundaries[0] == 0:  # e.g. no warm-up: the first action runs before any request
            self._reach_boundary()

    @property
    def budget(self) -> int | None:
        return None if self.open_ended else self._boundaries[-1]

    def acquire(self) -> None:
        while True:
            # Spent once the last boundary's action is over: until then it may still move the end
            # (`end_at`, a window after the budget), and the users must be there to go on.
            spent = self.issued >= self._boundaries[-1] and self._next >= len(self._boundaries)
            if self.closed or (not self.open_ended and spent):
                raise BudgetSpent()
            pending = self._next < len(self._boundaries)
            if self._open.is_set() and (
                (pending and self.issued < self._boundaries[self._next]) or (not pending and self.open_ended)
            ):
                self.issued += 1
                self.in_flight += 1
                self._idle.clear()
                if pending and self.issued == self._boundaries[self._next]:
                    self._open.clear()  # the rest wait here until the boundary's action is done
                return
            self._open.wait()

    def release(self) -> None:
        self.in_flight -= 1
        self.completed += 1
        if self.in_flight == 0:
            self._idle.set()
        if (
            self.in_flight == 0
            and self._next < len(self._boundaries)
            and self.completed == self._boundaries[self._next]
        ):
            self._reach_boundary()

    def _reach_boundary(self) -> None:
        self._open.clear()
        gevent.spawn(self._run_boundary, self._next)

    def _run_boundary(self, index: int) -> None:
        me = gevent.getcurrent()
        self._actions[me] = index
        try:
            self._on_boundary(self._boundaries[index])
        finally:
            del self._actions[me]
            if self._next == index:  # not resumed early
                self._next += 1
                self._open.set()

    def resume(self) -> None:
        """From a boundary's (or `drain`'s) action that no longer needs the load held, say once
        its snapshot is taken and only arriving: tokens flow towards the next boundary while the
        action finishes. No `end_at` after this: the budget may already be on its way. Anywhere
        else, or a second time, it does nothing."""
        me = gevent.getcurrent()
        index = self._actions.get(me)
        if index is not None and self._next == index:
            self._next += 1
            self._open.set()
        elif me is self._draining:
            self._open.set()

    def end_at(self, count: int) -> None:
        """From a boundary's action: make `count` the budget and the only boundary left (a run
        that ends early, after one more stretch of requests)."""
        if self._actions.get(gevent.getcurrent()) != self._next:
            raise RuntimeError("end_at() is for a boundary's action, before it resumes the load")
        current = self._boundaries[self._next]
        if count <= current:
            raise ValueError(f"the new end {count} must come after the current boundary {current}")
        self._boundaries[self._next + 1 :] = [count]

    def drain(self, action: Callable[[int], object]) -> None:
        """Pause now: hand out no more tokens, wait until the requests in flight complete, run
        `action(completed)`, then reopen. For clock-driven checkpoints, after the last boundary;
        blocks the calling greenlet meanwhile."""
        if self._next < len(self._boundaries):
            raise RuntimeError("drain() is for after the last boundary")
        if self.closed:
            return
        self._open.clear()
        self._draining = gevent.getcurrent()
        try:
            self._idle.wait()
            if not self.closed:
                action(self.completed)
        finally:
            self._draining = None
            self._open.set()

    def close(self) -> None:
        """Stop handing out tokens for good (the run is ending early)."""
        self.closed = True
        self._open.set()


def checkpoint_boundaries(warmup: int, measured: int, checkpoints: int) -> list[int]:
    """Boundaries in total requests: end of warm-up, then `checkpoints` evenly spaced points in
    the measured requests, the last of which is the end."""
    if measured < 1:
        raise ValueError("need at least one measured request")
    steps = max(1, min(checkpoints, measured))
    points = {warmup + round(measured * i / steps) for i in range(1, steps + 1)}
    return [warmup, *sorted(points)]
