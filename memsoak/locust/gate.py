"""An exact request budget for Locust users: one token per request, handed out by a gate.

Locust has no request limit of its own, and quitting after a count overshoots by whatever is in
flight. The gate instead refuses the (N+1)th token. It also stops handing out tokens at each
boundary (end of warm-up, each checkpoint, the end), waits until every request in flight has
finished, and only then runs the boundary's action (a snapshot), so a snapshot sees exactly the
requests it claims to. Users block in `acquire` meanwhile.
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
    ) -> None:
        """`boundaries`: strictly increasing request counts; the last one is the budget.
        `on_boundary(count)` runs in its own greenlet once `count` requests have all completed."""
        if not boundaries or any(b <= a for a, b in itertools.pairwise(boundaries)):
            raise ValueError(f"boundaries must be strictly increasing, got {list(boundaries)}")
        if boundaries[0] < 0:
            raise ValueError("boundaries must not be negative")
        self._boundaries = list(boundaries)
        self._on_boundary = on_boundary
        self._next = 0  # index of the boundary being worked towards
        self.issued = 0
        self.completed = 0
        self.in_flight = 0
        self.closed = False
        self._open = Event()
        self._open.set()
        if self._boundaries[0] == 0:  # e.g. no warm-up: the first action runs before any request
            self._reach_boundary()

    @property
    def budget(self) -> int:
        return self._boundaries[-1]

    def acquire(self) -> None:
        while True:
            if self.closed or self.issued >= self.budget:
                raise BudgetSpent()
            if self._next < len(self._boundaries) and self.issued < self._boundaries[self._next]:
                self.issued += 1
                self.in_flight += 1
                if self.issued == self._boundaries[self._next]:
                    self._open.clear()  # the rest wait here until the boundary's action is done
                return
            self._open.wait()

    def release(self) -> None:
        self.in_flight -= 1
        self.completed += 1
        if (
            self.in_flight == 0
            and self._next < len(self._boundaries)
            and self.completed == self._boundaries[self._next]
        ):
            self._reach_boundary()

    def _reach_boundary(self) -> None:
        self._open.clear()
        gevent.spawn(self._run_boundary, self._boundaries[self._next])

    def _run_boundary(self, count: int) -> None:
        try:
            self._on_boundary(count)
        finally:
            self._next += 1
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
