"""The default run: exactly N measured requests, with snapshots at evenly spaced checkpoints, the
last at the end (taken at test stop, so a run ended any other way gets one too)."""

from __future__ import annotations

from memsoak.locust.gate import checkpoint_boundaries
from memsoak.locust.plans.base import Plan


class FixedCount(Plan):
    def boundaries(self) -> list[int]:
        settings = self.settings
        return self.with_trace_in(
            checkpoint_boundaries(settings.warmup, settings.requests, settings.checkpoints)
        )

    def at_checkpoint(self, measured: int) -> None:
        if measured < self.settings.requests:
            self.session.snapshot(measured, "checkpoint", resume_load=True)
        else:
            # quit() must not run in this greenlet's caller chain: the session spawns it.
            self.session.quit()
