"""The default run: exactly N measured requests, with snapshots at evenly spaced checkpoints.

Unless `--frames` forces a depth, the series is traced one frame deep (the cheapest depth), the
last snapshot is taken at the N-th request, and the windows after it deepen the suspects'
tracebacks (plans/base.py): their requests come after the N. Otherwise, or when the gate cannot
move its end (a distributed master), the last snapshot is taken at test stop, so a run ended any
other way gets one too; unless a native window may follow (plans/native.py).
"""

from __future__ import annotations

from typing import Any

from memsoak.locust.gate import checkpoint_boundaries
from memsoak.locust.plans.base import Plan


class FixedCount(Plan):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shallow = self.session.can_move_end and not self.settings.frames

    def boundaries(self) -> list[int]:
        settings = self.settings
        return self.with_trace_in(
            checkpoint_boundaries(settings.warmup, settings.requests, settings.checkpoints)
        )

    def at_checkpoint(self, measured: int) -> None:
        session = self.session
        if measured < self.settings.requests:
            session.snapshot(measured, "checkpoint", resume_load=True)
        elif session.can_move_end and (self.paths_depth is not None or self.settings.native_window > 0):
            # Windows may follow: the final snapshot now, with the load held (test stop then has
            # it), so the verdict that decides on them is the run's own.
            if session.snapshot(measured, "final"):
                self.end_series(measured, session.report_so_far(measured)[0])
        else:
            session.quit()  # the session spawns the quit: never from this greenlet's caller chain
