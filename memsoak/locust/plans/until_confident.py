"""`--until-confident`: checkpoints dense at first, then geometrically spaced
(analysis/sequential.py), and after each one the question whether the verdict could still
change; the run stops once it cannot, or at the cap.

A run long enough to settle traces its series one frame deep and then, when there are suspects,
runs the windows that deepen their tracebacks (plans/base.py). The windows' requests come out of
the cap, so the run never makes more than it was asked for: at the cap there is room for the
call-path window only.
"""

from __future__ import annotations

from typing import Any

from analysis.report import Report
from analysis.sequential import SHALLOW_MIN_CAP, confident_checkpoints, series_cap
from memsoak.locust.plans.base import Plan


class UntilConfident(Plan):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The windows after the series move the end of the budget, which the gate must follow.
        self.shallow = self.session.can_move_end and self.settings.requests >= SHALLOW_MIN_CAP

    def boundaries(self) -> list[int]:
        settings = self.settings
        series = series_cap(settings.requests, self.shallow)
        boundaries = [settings.warmup, *(settings.warmup + n for n in confident_checkpoints(series))]
        if series < settings.requests:
            boundaries.append(settings.warmup + settings.requests)
        return self.with_trace_in(boundaries)

    def at_checkpoint(self, measured: int) -> None:
        if measured >= self.settings.requests:
            self.session.quit()
        # The load stays held until the check: it may end the run.
        elif self.session.snapshot(measured, "checkpoint"):
            self.stop_if_settled(measured)

    def series_over(self, measured: int, report: Report) -> bool:
        # Not settled at the series' cap: the cap's last requests are the windows'.
        return bool(
            self.paths_depth and report.suspects and measured >= series_cap(self.settings.requests, True)
        )

    def window_room(self, measured: int) -> int | None:
        return self.settings.requests - measured
