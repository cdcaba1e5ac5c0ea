"""Distributed Locust: an exact request budget and checkpoints shared by a master and its workers.

The master owns the budget and the snapshots. For each phase (warm-up, then each stretch between
checkpoints) it splits the phase's requests into per-worker quotas, in proportion to the users
each worker runs, and sends them with `runner.send_message`. A worker's gate hands out exactly its
quota, waits until its last request has completed and reports "drained". When every worker has
drained, every request of the phase is done: the master takes the snapshot, then sends the next
quotas. So 10,000 requests over 3 workers are 10,000 in total, and each snapshot sees exactly the
requests it claims to.

Workers need no agent access and no options of their own: the plugin on a worker is only a gate.

A worker lost mid-phase (killed, its machine gone: Locust stops hearing its heartbeat) leaves part
of its quota undone, and how much is known only to the target: a killed worker reports nothing,
and its requests in flight may or may not have reached the target. So once the others have
drained, the master asks the agent how many requests the target has served since the load began
(it counts every request that reached the app) and sends the difference to the workers still
there, as more quota for the same phase. The phase's snapshot then sees exactly its requests, as
if nothing had happened. With no worker left, the run ends with exit 3 and says how many requests
of the budget were not made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
from locust.env import Environment

from memsoak.agent_client import AgentError
from memsoak.locust.plugin import MemsoakPlugin
from memsoak.locust.quota import DRAINED, QuotaCoordinator
from memsoak.locust.state import Gate

logger = logging.getLogger("memsoak")

# A killed worker's last requests may still be reaching the target: its count must hold still
# this long (between two readings) before the make-up is sized from it.
SETTLE_S = 1.0
SETTLE_TRIES = 20


class DistributedMasterPlugin(MemsoakPlugin):
    """The plugin on `locust --master`: snapshots and reports as usual; the budget is kept by a
    `QuotaCoordinator` instead of a local gate (the master runs no users)."""

    GATE_MOVES_END = False

    def register(self, environment: Environment) -> None:
        super().register(environment)
        runner = environment.runner
        assert runner is not None
        runner.register_message(DRAINED, self._on_drained)
        environment.events.spawning_complete.add_listener(self._on_spawning_complete)

    def _make_gate(self, boundaries: list[int], on_boundary: Callable[[int], None], open_ended: bool) -> Gate:
        return QuotaCoordinator(self, boundaries, on_boundary, open_ended=open_ended)

    def _end_soak(self) -> None:
        # The workers' users are stopped mid-request by a quit: end at a drained chunk instead,
        # so the final snapshot's count is exact.
        gate = self.gate
        if isinstance(gate, QuotaCoordinator) and not gate.closed:
            gate.drain(lambda _completed: self._quit())
        else:
            self._quit()

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

    def _on_test_stop(self, environment: Environment, **kwargs: Any) -> None:
        gate = self.gate
        if isinstance(gate, QuotaCoordinator) and not self.session.interrupted:
            gate.account_for_lost()
        super()._on_test_stop(environment, **kwargs)

    def _load_stats(self, environment: Environment) -> dict[str, object]:
        stats = super()._load_stats(environment)
        gate = self.gate
        if isinstance(gate, QuotaCoordinator):
            stats.update(
                workers_lost=gate.workers_lost,
                requests_resent=gate.requests_resent,
                requests_not_made=gate.requests_not_made,
            )
        return stats

    def served_count(self) -> int | None:
        """The target's count of requests served (the agent counts each that reached the app)."""
        try:
            return int(self.agent.status()["requests_served"])
        except (AgentError, KeyError, TypeError, ValueError) as exc:
            self.session.event(f"reading the target's request count failed: {exc}")
            return None

    def settled_served_count(self) -> int | None:
        """The count once it holds still: a lost worker's last requests may still be arriving."""
        last = self.served_count()
        for _ in range(SETTLE_TRIES):
            gevent.sleep(SETTLE_S)
            now = self.served_count()
            if now is None or now == last:
                return now
            last = now
        return None

    def count_failed(self, failed: int) -> None:
        """A worker's measured failures, as it drained a phase."""
        self.session.failed_measured += failed
        if failed and self.session.gate is not None:
            self._stop_if_failures_settle_it(self.session.gate.completed)

    def note(self, message: str) -> None:
        self.session.event(message)
        logger.warning("memsoak: %s", message)

    def distributed_failure(self, message: str) -> None:
        """The budget cannot be kept: the run ends with exit 3 and the report of what was done."""
        if self.session.load_failed:
            return
        self.session.load_failed = True
        self.session.event(f"load failed at {time.strftime('%Y-%m-%d %H:%M:%S %z')}: {message}")
        logger.error("memsoak: %s", message)
        self._quit()
