"""The run plan: what a run does at each of its boundaries. One module per way to run (like k6's
`lib/executor/`, one file per executor over a shared base), chosen in `plans/__init__.py`:

    fixed.py            N measured requests, snapshots at evenly spaced checkpoints (the default)
    soak.py             a time-bound soak: checkpoints by the clock
    watch.py            tracing off, a cheap census; a traced window once growth shows
    until_confident.py  sequential checkpoints, stopping once the verdict is settled

The plugin (memsoak/locust/plugin.py) only wires Locust to a plan: at test start it makes a
`Session` (the run's state and shared actions: snapshots, events, tracing, the RSS sampler, the
retention search) and the plan, builds the request gate from `plan.boundaries()` (request counts,
warm-up included; `open_ended`: requests go on after the last until the plan ends the run), and
calls `plan.on_boundary(measured)` each time the load has drained at one. At test stop it asks
the plan what was measured (`span`), whether the plan ran its course (`complete`), and lets it
have the last word on the report (`conclude`). A new way to run is one new module: a `Plan`
subclass with its boundaries and its `at_checkpoint` (or its own `on_boundary`), listed in
`plans/__init__.py`.

Windows: K more requests after a plan's series, with a start and an end action, that no figure
counts (report.json's `requests.window`). A plan ends its series with `end_series(measured,
report)`; the base then opens, one after the other, the windows `windows(report)` returns, and
quits after the last one (or at once, when there are none). A window is a `Window` subclass:

    requests        how many requests it lasts
    open(report)    the start action (tell the agent what to watch); the event to note, or None
                    when it could not open (the window is then skipped)
    close(seen)     the end action, with the requests it saw (gather what the agent watched into
                    the session's RunData); also called at test stop for a window cut short

The call-path window (plans/call_paths.py: watch the call paths to the suspects' lines, deeper
than the series was traced) is one; a native window (memray over K requests) is another: add its
module and return it from the `windows` of the plans that want it. While a window runs the
RSS sampler is off (its readings would count the window as measured) and the retention search
has already started, in a child of the target.
"""

from __future__ import annotations

from typing import Any

from analysis.report import Report
from analysis.sequential import settled
from memsoak.locust.options import Settings
from memsoak.locust.session import Session

# Tracing starts this fraction of the warm-up before the baseline, not at it. A container that
# grew untraced (a leaking list) is not traced until it next reallocates, and then its whole
# buffer is traced at once: at the baseline that would count everything the warm-up leaked as
# growth of the measured run (measured: 66 KB/request reported for the seed's 40 KB). A list
# reallocates every 1/8 of its size, so a quarter of the warm-up gets it traced in time.
TRACE_IN_SHARE = 4


class Window:
    """K requests after the series with a start and an end action (see the module docstring)."""

    requests = 100

    def __init__(self, session: Session) -> None:
        self.session = session

    def open(self, report: Report) -> str | None:
        raise NotImplementedError

    def close(self, seen: int) -> None:
        raise NotImplementedError


class Plan:
    open_ended = False  # requests go on after the last boundary until the plan ends the run

    def __init__(self, session: Session) -> None:
        self.session = session
        self.settings: Settings = session.settings
        # Where the series ended (measured requests) once windows follow it, and the windows.
        self.series_end: int | None = None
        self._windows: list[Window] = []
        self._window: Window | None = None  # the one open
        self._window_started = 0
        self._window_end: int | None = None
        self._series_report: Report | None = None  # what the windows are about

    # -- what the plugin asks ----------------------------------------------------------------

    def boundaries(self) -> list[int]:
        """The gate's boundaries, in requests from the first (warm-up included)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The plan in a few words, for the run history."""
        return f"{self.settings.requests} requests"

    def on_boundary(self, measured: int) -> None:
        """The load has drained at a boundary, `measured` requests after the warm-up (negative:
        still in it). The count plans' course: tracing on just before the baseline, the baseline,
        then a window's end or the plan's own checkpoint."""
        if measured < 0:
            self.start_tracing()
        elif measured == 0:
            if self.start_tracing():
                self.session.snapshot(0, "baseline", resume_load=True, on_taken=self.start_measuring)
        elif measured == self._window_end:
            self._close_window(measured)
        else:
            self.at_checkpoint(measured)

    def at_checkpoint(self, measured: int) -> None:
        raise NotImplementedError

    def start_measuring(self) -> None:
        """The baseline's state is taken (from the snapshot's `on_taken`)."""
        self.session.start_measuring()

    def stop(self) -> None:
        """Test stop, under the snapshot lock: stop anything of the plan's still running."""

    def span(self, measured_in_all: int) -> tuple[int, int]:
        """(measured requests, window requests) of `measured_in_all` after the warm-up; a window
        cut short is closed here with what it saw."""
        measured = measured_in_all - self.session.offset
        if self.series_end is None:
            return measured, 0
        window = measured - self.series_end
        if self._window is not None:
            self._window.close(window)
            self._window = None
        return self.series_end, window

    def complete(self, measured_in_all: int) -> bool:
        """Whether the run went its whole course (a run cut short is no baseline for the history's
        regression check)."""
        return measured_in_all >= self.settings.requests

    def stopped_early(self, measured: int, measured_in_all: int, window: int) -> str:
        """The event of a run that did not go its course."""
        return f"stopped after {measured_in_all - window} of {self.settings.requests} measured requests"

    def conclude(self, report: Report) -> Report:
        """The final report, as the plan sees it."""
        return report

    # -- what a plan does --------------------------------------------------------------------

    def with_trace_in(self, boundaries: list[int]) -> list[int]:
        """`boundaries` with one a quarter of the warm-up before the baseline, to turn tracing on."""
        lead = self.settings.warmup // TRACE_IN_SHARE
        return [self.settings.warmup - lead, *boundaries] if lead else boundaries

    def series_depth(self, status: dict[str, Any]) -> tuple[int | None, str]:
        """How deep to trace the series (None: the target's depth), and a note for the event."""
        return self.settings.frames or None, ""

    def start_tracing(self) -> bool:
        return self.session.turn_tracing_on(self.series_depth)

    def stop_if_settled(self, measured: int) -> None:
        """After a checkpoint taken with the load held: end the series when the snapshots so far
        leave no doubt about the verdict (analysis/sequential.py), or when `series_over` says."""
        report, snapshots = self.session.report_so_far(measured)
        reason = settled(report, snapshots)
        if reason is not None:
            self.session.event(f"verdict settled after {measured:,} measured requests: {reason}")
            self.end_series(measured, report)
        elif self.series_over(measured, report):
            self.end_series(measured, report)

    def series_over(self, measured: int, report: Report) -> bool:
        """Whether the series ends at `measured` even though its verdict is not settled."""
        return False

    def windows(self, report: Report) -> list[Window]:
        """The windows to run after the series, given the report it ended with."""
        return []

    def end_series(self, measured: int, report: Report) -> None:
        """From a boundary's action: the series is over at `measured` requests. Quit, or run the
        windows `report` calls for first."""
        session = self.session
        self._windows = self.windows(report) if session.gate is not None and session.can_move_end else []
        self._series_report = report
        if not self._open_next(measured):
            session.quit()
            return
        self.series_end = measured
        session.retention.start_early(report)
        session.sampler.stop()  # its readings would count the windows as measured

    def _open_next(self, measured: int) -> bool:
        """Open the next window that opens; False when none is left."""
        session = self.session
        while self._windows and self._series_report is not None:
            window = self._windows.pop(0)
            opened = window.open(self._series_report)
            if opened is None:
                continue
            self._window, self._window_started = window, measured
            self._window_end = measured + window.requests
            assert session.gate is not None
            session.gate.end_at(session.gate.completed + window.requests)
            session.event(opened)
            return True
        return False

    def _close_window(self, measured: int) -> None:
        window, self._window = self._window, None
        if window is not None:
            window.close(measured - self._window_started)
        self._window_end = None
        if not self._open_next(measured):
            self.session.quit()
