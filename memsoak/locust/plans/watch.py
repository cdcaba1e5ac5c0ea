"""Watch mode (`--watch`): tracing off, a cheap census every few hundred requests
(analysis/watch.py); once the census shows growth, trace a window of WINDOW_REQUESTS requests
with a baseline and checkpoints of its own. The report counts the requests before that window as
warm-up. A target that never grows is never traced: its verdict comes from the census alone."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from analysis.model import Phase, Sample
from analysis.report import Report
from analysis.watch import WINDOW_REQUESTS, CensusPoint, growth, quiet_verdict, watch_checkpoints
from memsoak.agent_client import AgentError
from memsoak.locust.plans.base import Plan


class Watch(Plan):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._census: list[CensusPoint] = []
        self._traced_end: int | None = None  # where the traced window ends, once it opened
        self._trace_pending = False  # tracing is on: the window opens at the next census point

    def boundaries(self) -> list[int]:
        warmup = self.settings.warmup
        return [warmup, *(warmup + n for n in watch_checkpoints(self.settings.requests))]

    def on_boundary(self, measured: int) -> None:
        session = self.session
        if measured == 0:
            session.measuring_since = time.monotonic()
            self._take_census(0)
        elif self._trace_pending:
            self._open_traced(measured)
        elif self._traced_end is None:
            self._take_census(measured)
        elif measured >= self._traced_end or measured >= self.settings.requests:
            session.quit()
        else:
            self.at_checkpoint(measured - session.offset)

    def at_checkpoint(self, measured: int) -> None:
        if not self.settings.until_confident:
            self.session.snapshot(measured, "checkpoint", resume_load=True)
        elif self.session.snapshot(measured, "checkpoint"):
            self.stop_if_settled(measured)

    def phases(self, warmup: int, measured: int) -> list[Phase]:
        session = self.session
        untraced = self._traced_end is None
        done = [
            Phase("warm-up requests", self.settings.warmup, 0, ""),
            Phase(
                "watched", measured if untraced else session.offset, 0, f"{len(self._census)} census readings"
            ),
        ]
        if untraced:
            return done
        traced = super().phases(warmup, measured)[1]  # the measured window, as any series
        return [*done, traced]

    def conclude(self, report: Report) -> Report:
        if self._traced_end is None:
            return replace(report, verdict=quiet_verdict(self._census, report.thresholds))
        return report

    def _take_census(self, measured: int) -> None:
        """One census reading with tracing off; once the census shows growth, trace a window."""
        session = self.session
        try:
            if not self._census:
                # Once: the census' block count is read just after full collections
                # (memsoak/agent/census.py), and this makes the first one now.
                session.agent.collect_garbage()
            status = session.agent.status()
        except AgentError as exc:
            session.fail_target(f"census at {measured} measured requests failed: {exc}")
            return
        self._census.append(
            CensusPoint(
                measured,
                status["rss_bytes"],
                int(status.get("settled_blocks", status.get("allocated_blocks", 0))),  # older agents
            )
        )
        since = session.measuring_since or time.monotonic()
        session.data.samples.append(Sample(measured, time.monotonic() - since, status["rss_bytes"], 0))
        reason = growth(self._census)
        if measured >= self.settings.requests:
            session.quit()
            return
        if reason is None:
            return
        session.event(f"watch: {reason} after {measured:,} requests; tracing {WINDOW_REQUESTS:,} requests")
        self._trace_pending = self.start_tracing()

    def _open_traced(self, measured: int) -> None:
        session = self.session
        self._trace_pending = False
        session.offset = measured
        self._traced_end = measured + WINDOW_REQUESTS
        session.data.samples.clear()
        session.snapshot(0, "baseline", resume_load=True, on_taken=self.start_measuring)
