"""The default run: exactly N measured requests, with snapshots at evenly spaced checkpoints, the
last at the end (taken at test stop, so a run ended any other way gets one too; or at the end of
the budget when a native window may follow, plans/native.py)."""

from __future__ import annotations

from analysis.report import Report
from memsoak.locust.gate import checkpoint_boundaries
from memsoak.locust.plans.base import Plan, Window
from memsoak.locust.plans.native import NativeWindow


class FixedCount(Plan):
    def boundaries(self) -> list[int]:
        settings = self.settings
        return self.with_trace_in(
            checkpoint_boundaries(settings.warmup, settings.requests, settings.checkpoints)
        )

    def at_checkpoint(self, measured: int) -> None:
        session = self.session
        if measured < self.settings.requests:
            session.snapshot(measured, "checkpoint", resume_load=True)
        elif self.settings.native_window > 0 and session.can_move_end:
            # A native window may follow: the final snapshot now (test stop then has it), so the
            # verdict that decides is the run's own.
            if session.snapshot(measured, "final"):
                self.end_series(measured, session.report_so_far(measured)[0])
        else:
            # quit() must not run in this greenlet's caller chain: the session spawns it.
            session.quit()

    def windows(self, report: Report) -> list[Window]:
        return [NativeWindow(self.session)]
