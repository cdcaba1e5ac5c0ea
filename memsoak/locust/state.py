"""One test's state on the Locust side: what it gathered, its gate, how it is going, and the
two things anything may do with it (note an event, fail the target). The collaborators (the RSS
sampler, the retention search, the progress lines) read it; `memsoak.locust.session.Session`
adds the actions the run plans take.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from gevent.lock import Semaphore

from analysis.model import RequestCounts, RunData, Sample, Snapshot
from memsoak.agent_client import AgentClient
from memsoak.history import History
from memsoak.locust.history_recorder import HistoryRecorder
from memsoak.locust.options import Settings
from memsoak.rundir import RunDir
from memsoak.snapshot_store import SnapshotStore

logger = logging.getLogger("memsoak")


class Gate(Protocol):
    """What a run needs of the request gate: the local `RequestGate` or a distributed master's
    `QuotaCoordinator`."""

    @property
    def completed(self) -> int: ...
    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...
    def resume(self) -> None: ...
    def drain(self, action: Callable[[int], object]) -> None: ...
    def end_at(self, count: int) -> None: ...


class RunState:
    def __init__(
        self,
        settings: Settings,
        agent: AgentClient,
        run_dir: RunDir,
        *,
        history: History | None,
        progress: bool,
        quit: Callable[[], None],
        end_soak: Callable[[], None],
        can_move_end: bool,
    ) -> None:
        """`quit`: stop the load (the final snapshot comes at test stop); `end_soak`: the same at
        the end of a soak's clock (a distributed master first drains its workers); `can_move_end`:
        whether the gate follows `end_at` (a distributed master's quotas do not, yet)."""
        self.settings = settings
        self.agent = agent
        self.run_dir = run_dir
        self.history = HistoryRecorder(history, settings, self.event) if history is not None else None
        self.progress = progress  # `memsoak run` reads the events as they come
        self.quit = quit
        self.end_soak = end_soak
        self.can_move_end = can_move_end
        self.data = RunData(snapshots=[], samples=[], requests=RequestCounts(0, 0, 0))
        self.store = SnapshotStore(self.data.snapshots)
        self.gate: Gate | None = None
        self.failed_measured = 0
        self.failed_warmup = 0  # before the baseline: in no figure, but they can settle the verdict
        self.stopped_for_failures = False  # memsoak/locust/failing.py stopped the load
        self.target_failed = False
        self.load_failed = False  # the load could not be completed (distributed: no worker left)
        self.interrupted = False  # a signal (Ctrl-C, SIGTERM) ended the test
        self.measuring_since: float | None = None
        # Requests after the warm-up that the report counts as warm-up too: watch mode's untraced
        # stretch before its traced window.
        self.offset = 0
        self.snapshotting = False  # the target is paused by design: the sampler waits
        self.snapshot_lock = Semaphore()  # a clock's checkpoint and the final one never overlap
        self.tracing_turned_on = False
        self.series_frames = 0  # how deep the series is traced, once it is

    # -- what anything reads ------------------------------------------------------------

    def measured_now(self) -> int:
        """Measured requests completed so far (watch mode: in its traced window)."""
        gate = self.gate
        return max(0, gate.completed - self.settings.warmup - self.offset) if gate is not None else 0

    def latest_reading(self) -> Sample | Snapshot | None:
        """The most recent reading of the target's memory: a sample or a snapshot."""
        readings: list[Sample | Snapshot] = [*self.data.samples[-1:], *self.data.snapshots[-1:]]
        return max(readings, key=lambda r: r.requests, default=None)

    def latest_memory(self) -> tuple[int | None, int | None]:
        """The target's RSS and traced bytes at the last reading."""
        latest = self.latest_reading()
        return (latest.rss_bytes, latest.traced_bytes) if latest is not None else (None, None)

    # -- what anything may do ------------------------------------------------------------

    def event(self, message: str) -> None:
        self.data.events.append(f"{time.strftime('%H:%M:%S')} {message}")
        if self.progress:
            print(f"memsoak: {message}", flush=True)

    def fail_target(self, message: str) -> None:
        if self.target_failed:
            return
        self.target_failed = True
        measured = max(0, self.gate.completed - self.settings.warmup) if self.gate else 0
        since = self.measuring_since
        elapsed = f", {time.monotonic() - since:.1f} s into the measured run" if since is not None else ""
        self.event(
            f"target failed at {time.strftime('%Y-%m-%d %H:%M:%S %z')} after {measured} measured "
            f"requests{elapsed}: {message}"
        )
        logger.error("memsoak: %s", message)
        self.quit()
