"""The master's side of a distributed run's exact budget (memsoak/locust/distributed.py says how
it works): each phase's requests split into per-worker quotas, the boundary's action once every
worker has drained, and a lost worker's share made up."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import gevent
from gevent.event import AsyncResult
from locust.env import Environment

from memsoak.locust.options import Settings

QUOTA = "memsoak_quota"  # master -> worker: {"phase", "quota", "measured"}
DRAINED = "memsoak_drained"  # worker -> master: {"phase", "completed", "failed"}
WATCH_INTERVAL_S = 2.0
# A soak's load goes in chunks of about this many seconds: a checkpoint waits for the current
# one to drain, so this bounds how late it comes.
CHUNK_S = 1.0
CHUNK_FIRST_PER_USER = 10


class Master(Protocol):
    """What the coordinator needs of the plugin on the master."""

    environment: Environment | None
    settings: Settings

    def served_count(self) -> int | None: ...
    def settled_served_count(self) -> int | None: ...
    def note(self, message: str) -> None: ...
    def distributed_failure(self, message: str) -> None: ...
    def count_failed(self, failed: int) -> None: ...


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


class QuotaCoordinator:
    """The master's side: hands out each phase's requests as quotas and runs the boundary action
    (`on_boundary(total_completed)`, as `RequestGate` does) once every worker has drained.

    `open_ended` (a time-bound soak): after the last boundary the requests go on in chunks of
    about CHUNK_S seconds each, every one drained like a phase, and `drain(action)` (the soak
    clock's checkpoints) runs its action at the end of the current chunk, at an exact count."""

    def __init__(
        self,
        plugin: Master,
        boundaries: Sequence[int],
        on_boundary: Callable[[int], None],
        *,
        open_ended: bool = False,
    ) -> None:
        self._plugin = plugin
        self._boundaries = list(boundaries)
        self._fixed = len(self._boundaries)  # phases past these are a soak's chunks
        self.open_ended = open_ended
        self._chunk = 0  # requests in the last chunk
        self._chunk_started = 0.0
        self._chunk_elapsed = 0.0
        self._drains: list[tuple[Callable[[int], object], AsyncResult]] = []
        self._on_boundary = on_boundary
        self._phase = -1
        self._waiting: dict[str, int] = {}  # worker id -> quota still to be reported drained
        self._completed_at_boundary = 0
        self.closed = False
        self.started = False
        self._watcher: gevent.Greenlet | None = None
        self._served_base: int | None = None  # the target's request count before the first quota
        self._lost_in_phase: list[str] = []  # workers lost with part of this phase's quota
        self._seen: set[str] = set()  # every worker id that took part
        self._gone: set[str] = set()  # of those, the ones lost
        self._exact_completed: int | None = None  # counted by the target, when the load failed
        self.workers_lost = 0
        self.requests_resent = 0
        self.requests_not_made = 0

    @property
    def budget(self) -> int | None:
        return None if self.open_ended else self._boundaries[-1]

    def _planned(self) -> str:
        """What a lost load leaves undone, in words, for the events."""
        if self.open_ended:
            return f"of the current chunk (the soak's requests so far: {self._boundaries[-1]})"
        return f"of the budget of {self._boundaries[-1]}"

    @property
    def completed(self) -> int:
        """Exact at each boundary; in between, Locust's aggregated request count (workers report
        it every few seconds), kept inside the current phase."""
        if self._exact_completed is not None:
            return self._exact_completed
        done = self._completed_at_boundary
        if not self._waiting or self._phase >= len(self._boundaries):
            return done
        stats = self._plugin.environment.stats.total.num_requests if self._plugin.environment else 0
        return min(max(done, stats), self._boundaries[self._phase])

    def start(self) -> None:
        if self.started or self.closed:
            return
        self.started = True
        self._served_base = self._plugin.served_count()
        self._watcher = gevent.spawn(self._watch_workers)
        self._next_phase()

    def _runner(self) -> Any:
        environment = self._plugin.environment
        return environment.runner if environment else None

    def _next_phase(self) -> None:
        self._phase += 1
        if self.closed:
            return
        if self._phase >= len(self._boundaries):
            if not self.open_ended:
                return
            self._boundaries.append(self._boundaries[-1] + self._chunk_size())
        phase = self._phase
        start = self._boundaries[phase - 1] if phase > 0 else 0
        size = self._boundaries[phase] - start
        if size == 0:  # e.g. no warm-up: the baseline comes before any request
            gevent.spawn(self._run_boundary, phase)
            return
        if not self._send_quotas(phase, size):
            self._plugin.distributed_failure("no Locust worker is connected")

    def _chunk_size(self) -> int:
        """Requests for about CHUNK_S seconds of load, from how long the last chunk took."""
        users = max(1, sum(self._alive().values()))
        if self._chunk == 0 or self._chunk_elapsed <= 0:
            size = CHUNK_FIRST_PER_USER * users
        else:
            wanted = self._chunk * CHUNK_S / self._chunk_elapsed
            size = int(min(max(wanted, self._chunk / 4), self._chunk * 4))
        self._chunk = max(users, size)
        self._chunk_started = time.monotonic()
        return self._chunk

    def drain(self, action: Callable[[int], object]) -> None:
        """Send no more chunks after the current one; when it has drained, run
        `action(completed)`, then go on. Blocks the calling greenlet meanwhile."""
        if self.closed:
            return
        done = AsyncResult()
        self._drains.append((action, done))
        done.wait()

    def _after_chunk(self, phase: int) -> None:
        drains, self._drains = self._drains, []
        for action, done in drains:
            try:
                action(self._boundaries[phase])
            finally:
                done.set(None)
        self._next_phase()

    def _alive(self) -> dict[str, int]:
        """The connected workers and the users each runs."""
        runner = self._runner()
        if runner is None:
            return {}
        return {
            node.id: sum(node.user_classes_count.values())
            for node in (*runner.clients.running, *runner.clients.spawning, *runner.clients.ready)
        }

    def _send_quotas(self, phase: int, size: int) -> list[str]:
        """Split `size` requests of `phase` over the connected workers; the ones that got some."""
        workers = self._alive()
        if not workers:
            return []
        start = self._boundaries[phase - 1] if phase > 0 else 0
        measured = start >= self._plugin.settings.warmup
        quotas = split_quota(size, workers)
        self._waiting = {worker: quota for worker, quota in quotas.items() if quota > 0}
        runner = self._runner()
        for worker, quota in self._waiting.items():
            runner.send_message(QUOTA, {"phase": phase, "quota": quota, "measured": measured}, worker)
        return sorted(self._waiting)

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
        self._plugin.count_failed(int(data.get("failed", 0)))
        if not self._waiting:
            self._phase_drained(self._phase)

    def _phase_drained(self, phase: int) -> None:
        if self._lost_in_phase:
            gevent.spawn(self._make_up, phase)
        elif phase >= self._fixed:
            self._completed_at_boundary = self._boundaries[phase]
            self._chunk_elapsed = time.monotonic() - self._chunk_started
            gevent.spawn(self._after_chunk, phase)
        else:
            self._completed_at_boundary = self._boundaries[phase]
            gevent.spawn(self._run_boundary, phase)

    def _make_up(self, phase: int) -> None:
        """Every worker still there has drained, but some were lost with part of their quota:
        count on the target what was done and send the rest to the workers still there."""
        if self.closed:
            return
        lost = ", ".join(self._lost_in_phase)
        self._lost_in_phase = []
        boundary = self._boundaries[phase]
        served = self._plugin.settled_served_count()
        if served is None or self._served_base is None:
            self._plugin.distributed_failure(
                f"lost Locust worker(s) {lost}: the agent could not count the requests they finished, "
                "so the budget cannot be kept exact"
            )
            return
        done = served - self._served_base
        missing = boundary - done
        if missing < 0:
            self._plugin.distributed_failure(
                f"the target served {done} requests since the load began, {-missing} more than the "
                f"{boundary} the budget allows by now (another client, or a lost worker came back?)"
            )
            return
        if missing == 0:
            self._plugin.note(f"lost Locust worker(s) {lost} had finished their quota: nothing to re-send")
            self._phase_drained(phase)
            return
        if self.closed:
            return
        sent_to = self._send_quotas(phase, missing)
        if not sent_to:
            self.requests_not_made = self._boundaries[-1] - done
            self._exact_completed = done
            self._plugin.distributed_failure(
                f"lost Locust worker(s) {lost} and no worker left: {missing} requests of this phase "
                f"and {self.requests_not_made} {self._planned()} were not made (the target served {done})"
            )
            return
        self.requests_resent += missing
        self._plugin.note(
            f"re-sent the {missing} requests lost Locust worker(s) {lost} left unfinished to "
            f"worker(s) {', '.join(sent_to)} (the target had served {done} of the {boundary} due by now)"
        )

    def resume(self) -> None:
        """The local gate's early resume, not done here: the next phase's quotas go out once the
        boundary's action has finished, as they always have (a round trip to every worker)."""

    def _run_boundary(self, phase: int) -> None:
        self._completed_at_boundary = self._boundaries[phase]
        self._on_boundary(self._boundaries[phase])
        self._next_phase()

    def _check_workers(self) -> None:
        """Note workers gone missing (no heartbeat, or dropped by Locust since); take a lost
        worker's unfinished quota out of the phase, which is made up once the others drain."""
        runner = self._runner()
        if runner is None:
            return
        known = {node.id for node in runner.clients.all}
        self._seen.update(known)
        missing = {node.id for node in runner.clients.missing}
        gone = sorted((missing | (self._seen - known)) - self._gone)
        if not gone:
            return
        self._gone.update(gone)
        self.workers_lost += len(gone)
        pending = [worker for worker in gone if worker in self._waiting]
        if not pending:
            self._plugin.note(f"Locust worker(s) {', '.join(gone)} lost (no heartbeat) with no quota pending")
            return
        quota = sum(self._waiting.pop(worker) for worker in pending)
        self._lost_in_phase.extend(pending)
        self._plugin.note(
            f"Locust worker(s) {', '.join(gone)} lost (no heartbeat) during the phase ending at "
            f"{self._boundaries[self._phase]} requests, with a quota of {quota} not reported done"
        )
        if not self._waiting:
            self._phase_drained(self._phase)

    def _watch_workers(self) -> None:
        """A worker that disconnects mid-phase would leave the phase waiting forever."""
        while not self.closed:
            gevent.sleep(WATCH_INTERVAL_S)
            self._check_workers()

    def account_for_lost(self) -> None:
        """At a test stop memsoak did not ask for (Locust stops a test whose last worker went
        missing, say), with workers lost mid-phase: count on the target what was done, and fail."""
        if self.closed or not self.started:
            return
        self.close()  # the test is over: nothing is made up now
        self._check_workers()
        lost = self._lost_in_phase
        if not lost:
            return
        served = self._plugin.settled_served_count()
        if served is None or self._served_base is None:
            self._plugin.distributed_failure(
                f"lost Locust worker(s) {', '.join(lost)}; the agent could not count the requests done"
            )
            return
        done = served - self._served_base
        self._exact_completed = done
        self.requests_not_made = max(0, self._boundaries[-1] - done)
        self._plugin.distributed_failure(
            f"lost Locust worker(s) {', '.join(lost)} and the test stopped: {self.requests_not_made} "
            f"requests {self._planned()} were not made (the target served {done})"
        )

    def close(self) -> None:
        self.closed = True
        drains, self._drains = self._drains, []
        for _, done in drains:
            done.set(None)
        if self._watcher is not None and self._watcher is not gevent.getcurrent():
            self._watcher.kill(block=False)

    def end_at(self, count: int) -> None:
        raise RuntimeError("a distributed master's quotas do not follow a moved end")
