"""Distributed Locust: an exact request budget and checkpoints shared by a master and its workers.

The master owns the budget and the snapshots. For each phase (warm-up, then each stretch between
checkpoints) it splits the phase's requests into per-worker quotas, in proportion to the users
each worker runs, and sends them with `runner.send_message`. A worker's gate hands out exactly its
quota, waits until its last request has completed and reports "drained". When every worker has
drained, every request of the phase is done: the master takes the snapshot, then sends the next
quotas. So 10,000 requests over 3 workers are 10,000 in total, and each snapshot sees exactly the
requests it claims to.

Workers need no agent access and no options of their own: the plugin on a worker is only a gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gevent
from gevent.event import Event
from locust.env import Environment

from memsoak.locust.gate import BudgetSpent
from memsoak.locust.plugin import MemsoakPlugin

logger = logging.getLogger("memsoak")

QUOTA = "memsoak_quota"  # master -> worker: {"phase", "quota", "measured"}
DRAINED = "memsoak_drained"  # worker -> master: {"phase", "completed", "failed"}
WATCH_INTERVAL_S = 2.0


def split_quota(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split `total` into whole shares proportional to `weights` (largest remainder), summing to
    exactly `total`. Nodes with weight 0 get nothing, unless every weight is 0 (then equal shares)."""
    if not weights:
        raise ValueError("no workers to split a quota across")
    if total < 0:
        raise ValueError("a quota cannot be negative")
    names = sorted(weights)
    weight = {name: max(0, weights[name]) for name in names}
    if not any(weight.values()):
        weight = dict.fromkeys(names, 1)
    weight_sum = sum(weight.values())
    shares = {name: total * weight[name] // weight_sum for name in names}
    left = total - sum(shares.values())
    by_remainder = sorted(names, key=lambda n: (-(total * weight[n] % weight_sum), n))
    for name in by_remainder[:left]:
        shares[name] += 1
    return shares


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


class QuotaCoordinator:
    """The master's side: hands out each phase's requests as quotas and runs the boundary action
    (`on_boundary(total_completed)`, as `RequestGate` does) once every worker has drained."""

    def __init__(
        self,
        plugin: DistributedMasterPlugin,
        boundaries: Sequence[int],
        on_boundary: Callable[[int], None],
    ) -> None:
        self._plugin = plugin
        self._boundaries = list(boundaries)
        self._on_boundary = on_boundary
        self._phase = -1
        self._waiting: dict[str, int] = {}  # worker id -> quota still to be reported drained
        self._completed_at_boundary = 0
        self.closed = False
        self.started = False
        self._watcher: gevent.Greenlet | None = None

    @property
    def budget(self) -> int:
        return self._boundaries[-1]

    @property
    def completed(self) -> int:
        """Exact at each boundary; in between, Locust's aggregated request count (workers report
        it every few seconds), kept inside the current phase."""
        done = self._completed_at_boundary
        if not self._waiting or self._phase >= len(self._boundaries):
            return done
        stats = self._plugin.environment.stats.total.num_requests if self._plugin.environment else 0
        return min(max(done, stats), self._boundaries[self._phase])

    def start(self) -> None:
        if self.started or self.closed:
            return
        self.started = True
        self._watcher = gevent.spawn(self._watch_workers)
        self._next_phase()

    def _runner(self) -> Any:
        environment = self._plugin.environment
        return environment.runner if environment else None

    def _next_phase(self) -> None:
        self._phase += 1
        if self.closed or self._phase >= len(self._boundaries):
            return
        phase = self._phase
        start = self._boundaries[phase - 1] if phase > 0 else 0
        size = self._boundaries[phase] - start
        if size == 0:  # e.g. no warm-up: the baseline comes before any request
            gevent.spawn(self._run_boundary, phase)
            return
        runner = self._runner()
        workers = {
            node.id: sum(node.user_classes_count.values())
            for node in (*runner.clients.running, *runner.clients.spawning, *runner.clients.ready)
        }
        if not workers:
            self._plugin.distributed_failure("no Locust worker is connected")
            return
        quotas = split_quota(size, workers)
        measured = start >= self._plugin.settings.warmup
        self._waiting = {worker: quota for worker, quota in quotas.items() if quota > 0}
        for worker, quota in self._waiting.items():
            runner.send_message(QUOTA, {"phase": phase, "quota": quota, "measured": measured}, worker)

    def on_drained(self, worker: str, data: Mapping[str, Any]) -> None:
        if self.closed or data.get("phase") != self._phase or worker not in self._waiting:
            return
        expected = self._waiting.pop(worker)
        completed = int(data.get("completed", -1))
        if completed != expected:
            self._plugin.distributed_failure(
                f"worker {worker} completed {completed} requests of a quota of {expected}"
            )
            return
        self._plugin.failed_measured += int(data.get("failed", 0))
        if not self._waiting:
            self._completed_at_boundary = self._boundaries[self._phase]
            gevent.spawn(self._run_boundary, self._phase)

    def _run_boundary(self, phase: int) -> None:
        self._completed_at_boundary = self._boundaries[phase]
        self._on_boundary(self._boundaries[phase])
        self._next_phase()

    def _watch_workers(self) -> None:
        """A worker that disconnects mid-phase would leave the phase waiting forever."""
        while not self.closed:
            gevent.sleep(WATCH_INTERVAL_S)
            runner = self._runner()
            if runner is None or not self._waiting:
                continue
            alive = {
                node.id for node in (*runner.clients.running, *runner.clients.spawning, *runner.clients.ready)
            }
            lost = sorted(set(self._waiting) - alive)
            if lost:
                self._plugin.distributed_failure(
                    f"Locust worker(s) {', '.join(lost)} failed: left with "
                    f"{sum(self._waiting[w] for w in lost)} requests of their quota unfinished"
                )
                return

    def close(self) -> None:
        self.closed = True
        if self._watcher is not None and self._watcher is not gevent.getcurrent():
            self._watcher.kill(block=False)


class DistributedMasterPlugin(MemsoakPlugin):
    """The plugin on `locust --master`: snapshots and reports as usual; the budget is kept by a
    `QuotaCoordinator` instead of a local gate (the master runs no users)."""

    def register(self, environment: Environment) -> None:
        super().register(environment)
        runner = environment.runner
        assert runner is not None
        runner.register_message(DRAINED, self._on_drained)
        environment.events.spawning_complete.add_listener(self._on_spawning_complete)

    def _make_gate(self, boundaries: list[int]) -> Any:
        return QuotaCoordinator(self, boundaries, self._on_boundary)

    def _on_spawning_complete(self, **_: Any) -> None:
        # Quotas follow the users each worker runs, known once every worker has spawned.
        gate = self.gate
        if isinstance(gate, QuotaCoordinator):
            gate.start()

    def _on_drained(self, msg: Any, **_: Any) -> None:
        gate = self.gate
        if isinstance(gate, QuotaCoordinator):
            gate.on_drained(msg.node_id, msg.data or {})

    def _parameters(self, environment: Environment) -> dict[str, object]:
        params = super()._parameters(environment)
        runner = environment.runner
        params["locust_workers"] = getattr(runner, "worker_count", None)
        return params

    def distributed_failure(self, message: str) -> None:
        self._event(message)
        logger.error("memsoak: %s", message)
        self._quit()
