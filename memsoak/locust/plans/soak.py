"""A time-bound soak (`--memsoak-duration`): no request budget; after the warm-up the gate is
open-ended and a clock takes a checkpoint every `checkpoint_every_s` from the baseline, then ends
the run at `duration_s`."""

from __future__ import annotations

import time
from typing import Any

import gevent

from memsoak.locust.plans.base import Plan


class DurationSoak(Plan):
    open_ended = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock: gevent.Greenlet | None = None
        self._clock_done = False

    def boundaries(self) -> list[int]:
        # The only boundary is the end of warm-up; the clock drives the checkpoints.
        return [self.settings.warmup]

    def describe(self) -> str:
        return f"{self.settings.duration_s:g} s"

    def at_checkpoint(self, measured: int) -> None:
        """Boundaries after the baseline are the clock's, not the gate's."""

    def start_measuring(self) -> None:
        super().start_measuring()
        self._clock = gevent.spawn(self._run_clock, self.session.measuring_since)

    def stop(self) -> None:
        if self._clock is not None:
            self._clock.kill(block=True)

    def planned_measured(self) -> int | None:
        return None

    def complete(self, measured_in_all: int) -> bool:
        return self._clock_done

    def stopped_early(self, measured: int, measured_in_all: int, window: int) -> str:
        since = self.session.measuring_since
        elapsed = time.monotonic() - since if since else 0.0
        return (
            f"stopped after {measured} measured requests, {elapsed:.0f} s of {self.settings.duration_s:g} s"
        )

    def _run_clock(self, started: float) -> None:
        """Checkpoints every `checkpoint_every_s` from the baseline, then the end at `duration_s`.
        Times are from the baseline, so a slow snapshot delays no later checkpoint (it may
        swallow one, which is then skipped)."""
        settings, session = self.settings, self.session
        assert settings.duration_s is not None and settings.checkpoint_every_s is not None
        every, end = settings.checkpoint_every_s, started + settings.duration_s
        step = 1
        while started + step * every < end - every / 2:  # no checkpoint just before the end
            gevent.sleep(max(0.0, started + step * every - time.monotonic()))
            gate = session.gate
            if gate is None or gate.closed:
                return
            gate.drain(
                lambda completed: session.snapshot(
                    completed - settings.warmup, "checkpoint", resume_load=True
                )
            )
            step = max(step + 1, int((time.monotonic() - started) / every) + 1)
        gevent.sleep(max(0.0, end - time.monotonic()))
        self._clock_done = True
        session.end_soak()
