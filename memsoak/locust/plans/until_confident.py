"""`--until-confident`: checkpoints dense at first, then geometrically spaced
(analysis/sequential.py), and after each one the question whether the verdict could still
change; the run stops once it cannot, or at the cap.

A run long enough to settle traces its series one frame deep (a third of the untraced speed, not
a seventh at ten frames), then, when there are suspects, watches the call paths to their lines
in a short window as deep as the target's depth (plans/call_paths.py). The window's requests
come out of the cap, so the run never makes more than it was asked for.
"""

from __future__ import annotations

from typing import Any

from analysis.report import Report
from analysis.sequential import CALL_PATH_WINDOW, SHALLOW_MIN_CAP, confident_checkpoints, series_cap
from memsoak.locust.plans.base import Plan, Window
from memsoak.locust.plans.call_paths import CallPathWindow


class UntilConfident(Plan):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Whether the series may be traced one frame deep: the window after it moves the end of
        # the budget, which the gate must follow.
        self.shallow = self.session.can_move_end and self.settings.requests >= SHALLOW_MIN_CAP
        self.paths_depth: int | None = None  # the depth wanted for the suspects' call paths

    def boundaries(self) -> list[int]:
        settings = self.settings
        series = series_cap(settings.requests, self.shallow)
        boundaries = [settings.warmup, *(settings.warmup + n for n in confident_checkpoints(series))]
        if series < settings.requests:
            boundaries.append(settings.warmup + settings.requests)
        return self.with_trace_in(boundaries)

    def series_depth(self, status: dict[str, Any]) -> tuple[int | None, str]:
        depth = self.settings.frames or status.get("configured_frames")
        if self.shallow and isinstance(depth, int) and depth > 1 and not status.get("workers"):
            self.paths_depth = depth
            return 1, (
                f"; the verdict settles on these, then the suspects' call paths are watched for "
                f"{CALL_PATH_WINDOW} requests, {depth} frames deep"
            )
        return super().series_depth(status)

    def at_checkpoint(self, measured: int) -> None:
        if measured >= self.settings.requests:
            self.session.quit()
        # The load stays held until the check: it may end the run.
        elif self.session.snapshot(measured, "checkpoint"):
            self.stop_if_settled(measured)

    def series_over(self, measured: int, report: Report) -> bool:
        # Not settled at the series' cap: the cap's last requests are the window.
        return bool(
            self.paths_depth and report.suspects and measured >= series_cap(self.settings.requests, True)
        )

    def windows(self, report: Report) -> list[Window]:
        if self.paths_depth is None or not report.suspects:
            return []
        return [CallPathWindow(self.session, self.paths_depth)]
