"""This run's row in the run history (memsoak/history.py): opened at test start, its cheap
figures updated at each snapshot, closed with the verdict, and the regression check against the
scenario's recent runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from analysis.model import Snapshot
from analysis.regression import judge
from analysis.report import Report
from memsoak.history import History, HistoryError, suspect_summaries
from memsoak.locust.options import Settings

logger = logging.getLogger("memsoak")


class HistoryRecorder:
    def __init__(self, history: History, settings: Settings, event: Callable[[str], None]) -> None:
        self.history = history
        self._settings = settings
        self._event = event
        self.run_id: int | None = None

    def start(self, plan: str) -> None:
        settings = self._settings
        try:
            self.run_id = self.history.start(
                scenario=settings.scenario,
                target=settings.target,
                revision=settings.revision,
                run_dir=str(settings.out.resolve()),
                plan=plan,
            )
        except HistoryError as exc:
            self._failed(exc)

    def progress(self, snapshots: Sequence[Snapshot]) -> None:
        """Cheap numbers for an unfinished run: the two-point slopes from baseline to now."""
        if self.run_id is None or len(snapshots) < 2:
            return
        first, last = snapshots[0], snapshots[-1]
        measured = last.requests - first.requests
        if measured <= 0:
            return
        try:
            self.history.progress(
                self.run_id,
                measured=last.requests,
                bytes_per_request=(last.traced_bytes - first.traced_bytes) / measured,
                rss_per_request=(last.rss_bytes - first.rss_bytes) / measured,
            )
        except HistoryError as exc:
            self._failed(exc)

    def finish(self, status: str, report: Report) -> bool:
        """Close this run's row; True when it regressed against the scenario's recent runs."""
        if self.run_id is None:
            return False
        settings = self._settings
        try:
            self.history.finish(
                self.run_id,
                status=status,
                verdict=report.verdict.kind,
                measured=report.requests.measured,
                bytes_per_request=report.traced.per_request,
                rss_per_request=report.rss.per_request,
                suspects=suspect_summaries(report.suspects),
            )
            earlier = self.history.previous_finished(settings.scenario, self.run_id, 10)
        except HistoryError as exc:
            self._failed(exc)
            return False
        print(f"memsoak: history: run {self.run_id} in {self.history.path}", flush=True)
        if status != "finished":
            return False
        result = judge(report.traced.per_request, [r.bytes_per_request or 0.0 for r in earlier])
        if result.judged or settings.fail_on_regression:
            word = "REGRESSION" if result.regressed else "no regression" if result.judged else "not judged"
            print(f"memsoak: regression check: {word}: {result.explanation}", flush=True)
        return result.regressed

    def _failed(self, exc: HistoryError) -> None:
        self._event(f"run history not recorded: {exc}")
        logger.error("memsoak: %s", exc)
        self.run_id = None
