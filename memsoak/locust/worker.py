"""What runs on a `locust --worker`: a gate whose tokens come from the master, one phase at a
time (memsoak/locust/distributed.py says how the budget is shared)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent.event import Event
from locust.env import Environment

from memsoak.locust.gate import BudgetSpent
from memsoak.locust.quota import DRAINED, QUOTA


class WorkerGate:
    """A worker's side of the budget: the same acquire/release as `RequestGate`, but the tokens
    come from the master, one phase at a time."""

    def __init__(self, report_drained: Callable[[int, int, int], None]) -> None:
        self._report_drained = report_drained
        self.limit = 0  # tokens granted so far, all phases
        self.issued = 0
        self.completed = 0
        self.in_flight = 0
        self.phase = -1
        self.measured = False
        self.failed_in_phase = 0
        self._phase_quota = 0
        self.closed = False
        self._open = Event()

    def grant(self, phase: int, quota: int, measured: bool) -> None:
        self.phase = phase
        self.measured = measured
        self._phase_quota = quota
        self.failed_in_phase = 0
        self.limit += quota
        if quota == 0:
            self._drained()
        else:
            self._open.set()

    def acquire(self) -> None:
        while True:
            if self.closed:
                raise BudgetSpent()
            if self.issued < self.limit:
                self.issued += 1
                self.in_flight += 1
                if self.issued == self.limit:
                    self._open.clear()
                return
            self._open.wait()

    def release(self) -> None:
        self.in_flight -= 1
        self.completed += 1
        if self.in_flight == 0 and self.completed == self.limit:
            self._drained()

    def _drained(self) -> None:
        self._report_drained(self.phase, self._phase_quota, self.failed_in_phase)

    def close(self) -> None:
        self.closed = True
        self._open.set()


class WorkerPlugin:
    """What runs on a `locust --worker`: a gate fed by the master's quotas."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.gate: WorkerGate | None = None

    def register(self, environment: Environment) -> None:
        self.environment = environment
        environment.memsoak = self  # type: ignore[attr-defined]  # the users' gate lookup
        runner = environment.runner
        assert runner is not None
        runner.register_message(QUOTA, self._on_quota)
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stop.add_listener(self._on_test_stop)
        environment.events.request.add_listener(self._on_request)
        self.gate = WorkerGate(self._send_drained)

    def _on_test_start(self, **_: Any) -> None:
        self.gate = WorkerGate(self._send_drained)

    def _on_test_stop(self, **_: Any) -> None:
        if self.gate is not None:
            self.gate.close()

    def _on_request(self, exception: Any = None, **_: Any) -> None:
        gate = self.gate
        if exception is not None and gate is not None and gate.measured:
            gate.failed_in_phase += 1

    def _on_quota(self, msg: Any, **_: Any) -> None:
        data = msg.data
        if self.gate is None:
            self.gate = WorkerGate(self._send_drained)
        self.gate.grant(int(data["phase"]), int(data["quota"]), bool(data["measured"]))

    def _send_drained(self, phase: int, completed: int, failed: int) -> None:
        runner = self.environment.runner if self.environment else None
        if runner is not None:
            runner.send_message(DRAINED, {"phase": phase, "completed": completed, "failed": failed})
