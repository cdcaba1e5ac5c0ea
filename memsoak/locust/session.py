"""One test's session: its state (memsoak/locust/state.py) and the actions every run plan takes
with it: snapshots, tracing turned on and back off, a report of the snapshots so far.

The plugin makes a new session at each test start and hands it to the run's plan
(memsoak/locust/plans/); the collaborators (the RSS sampler, the history recorder, the retention
search) hang off it, so a plan reaches everything through one object and holds only its own
boundaries' state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from analysis.model import RequestCounts, RunData, Snapshot
from analysis.report import Report, build_report
from analysis.thresholds import Thresholds
from memsoak.agent_client import AgentError
from memsoak.locust.retention_search import RetentionSearch
from memsoak.locust.sampler import Sampler
from memsoak.locust.state import RunState

logger = logging.getLogger("memsoak")

# Tracebacks holding less than this are left out of snapshots: at most this many bytes of error
# per site in a diff (0.03 B/request over 10,000 requests), for snapshots ~5x smaller and faster.
MIN_SITE_BYTES = 256


class Session(RunState):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sampler = Sampler(self)
        self.retention = RetentionSearch(self)

    # -- what a plan reads -----------------------------------------------------------------

    def snapshots_for_analysis(self, thresholds: Thresholds) -> list[Snapshot]:
        """The run's snapshots with the sites analysis reads (the store holds only some)."""
        snapshots = self.store.for_analysis(thresholds.suspect_min_total_bytes)
        while self.store.unreadable:
            self.event(f"snapshot file unreadable, its sites count as empty: {self.store.unreadable.pop(0)}")
        return snapshots

    def for_analysis(self, data: RunData) -> RunData:
        return replace(data, snapshots=self.snapshots_for_analysis(self.settings.thresholds))

    def report_so_far(self, measured: int) -> tuple[Report, list[Snapshot]]:
        """The report of the snapshots up to `measured` requests, and those snapshots."""
        partial = RunData(
            snapshots=self.snapshots_for_analysis(self.settings.thresholds),
            samples=[s for s in self.data.samples if s.requests <= measured],
            requests=RequestCounts(self.settings.warmup + self.offset, measured, self.failed_measured),
        )
        return build_report(partial, self.settings.thresholds), partial.snapshots

    # -- what a plan does ------------------------------------------------------------------

    def start_measuring(self) -> None:
        """The baseline's state is taken: measured requests count from now (the load may resume
        before the baseline's document is in, and the next checkpoint's reading must count)."""
        self.measuring_since = time.monotonic()
        self.sampler.start()

    def turn_tracing_on(self, depth_for: Callable[[dict[str, Any]], tuple[int | None, str]]) -> bool:
        """Warm-up runs untraced when the target was started with tracing off (`memsoak run`
        does that): tracing starts just before the baseline, as deep as `depth_for(status)` says
        (None: the target's own depth), with a note for the event. False when the agent failed
        (the target has then failed)."""
        try:
            status = self.agent.status()
            if not status.get("tracing"):
                frames, note = depth_for(status)
                status = self.agent.set_tracing(True, frames)
                self.tracing_turned_on = True
                depth = status.get("frames_limit")
                self.event(f"warm-up ran untraced; tracing on at the baseline ({depth} frames{note})")
        except AgentError as exc:
            self.fail_target(f"turning tracing on at the baseline failed: {exc}")
            return False
        limit = status.get("frames_limit")
        if isinstance(limit, int):
            # What report.json's parameters say: the depth the series was traced at, not the one
            # the target had before tracing was on.
            self.series_frames = limit
            self.data.parameters["frames"] = limit
        return True

    def restore_tracing(self) -> None:
        """Leave a target that outlives the run as untraced as it was found."""
        if self.tracing_turned_on and not self.target_failed:
            try:
                self.agent.set_tracing(False)
            except AgentError as exc:
                self.event(f"turning tracing off at the end failed: {exc}")
            self.tracing_turned_on = False

    def snapshot(
        self,
        measured: int,
        label: str,
        required: bool = True,
        resume_load: bool = False,
        on_taken: Callable[[], None] | None = None,
    ) -> bool:
        """Take a snapshot at `measured` requests; True when it is in. `resume_load`: let the load
        go on once the agent has taken the target's state, while the document arrives (an agent
        that forks its snapshots says so first: the load then waits for the collection and the
        fork, not for the whole document). `on_taken` runs then too, before the load resumes."""
        # A reading just before the snapshot: RSS growth between snapshots is what requests drive,
        # apart from the snapshots' own footprint (analysis/driven.py).
        try:
            self.sampler.sample(measured)
        except AgentError as exc:
            self.event(f"RSS reading before the {label} snapshot failed: {exc}")
        with self.snapshot_lock:
            self.snapshotting = True
            try:
                gate = self.gate

                def taken() -> None:
                    if on_taken is not None:
                        on_taken()
                    if resume_load and gate is not None:
                        gate.resume()

                doc = self.agent.snapshot(MIN_SITE_BYTES, taken if resume_load or on_taken else None)
                snapshot, path = self.run_dir.write_snapshot(doc, measured, label)
            except (AgentError, ValueError) as exc:
                message = f"{label} snapshot at {measured} measured requests failed: {exc}"
                if required:
                    self.fail_target(message)
                else:
                    self.event(f"{message}; the run ends at the last snapshot")
                return False
            finally:
                self.snapshotting = False
            self.store.add(snapshot, path)
            child_s = doc.get("child_s")
            # What run.json says until the end: a run killed now reports up to this snapshot.
            self.data.requests = RequestCounts(self.settings.warmup, measured, self.failed_measured)
            self.event(
                f"{label} snapshot at {measured} requests: RSS {snapshot.rss_bytes:,} B, "
                f"paused the target {snapshot.duration_s:.2f} s"
                + (f" (built in {child_s:.2f} s by a forked child)" if isinstance(child_s, float) else "")
            )
            self.run_dir.save_state(self.data, "running")
            if self.history is not None:
                self.history.progress(self.data.snapshots)
            return True
