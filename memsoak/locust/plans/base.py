"""The run plan decides what a run does at each of its boundaries. There is one module per way to
run (like k6's `lib/executor/`, one file per executor over a shared base), and `plans/__init__.py`
chooses one:

    fixed.py            N measured requests, snapshots at evenly spaced checkpoints (the default)
    soak.py             a time-bound soak: checkpoints by the clock
    watch.py            tracing off, a cheap census; a traced window once growth shows
    until_confident.py  sequential checkpoints, stopping once the verdict is settled

The plugin (memsoak/locust/plugin.py) only wires Locust to a plan. At test start it makes a
`Session` (the run's state and shared actions: snapshots, events, tracing, the RSS sampler, the
retention search) and the plan. It builds the request gate from `plan.boundaries()` (request
counts, warm-up included; with `open_ended` the requests go on after the last one until the plan
ends the run), and calls `plan.on_boundary(measured)` each time the load has drained at one. At
test stop it asks the plan what was measured (`span`), whether the plan ran its course
(`complete`) and what ran (`phases`), and lets it have the last word on the report (`conclude`).
A new way to run is one new module: a `Plan` subclass with its boundaries and its
`at_checkpoint` (or its own `on_boundary`), listed in `plans/__init__.py`.

The depth. The series is traced as deep as `series_depth` says. A plan that sets `shallow`
traces it one frame deep: a third of the target's untraced speed, against a seventh at ten
frames. The suspects' tracebacks then come from the windows after the series (`windows`): the
call paths that reach their lines (plans/call_paths.py), and, for a line that several paths
reach, which of them keeps the memory (plans/kept_paths.py). `--frames N` (settings.frames)
forces a depth on the fixed-count plan.

Windows. A window is K more requests after a plan's series. It has a start action and an end
action, and no figure counts its requests (report.json's `requests.window`). A plan ends its
series with `end_series(measured, report)`. The base then opens the windows that
`windows(report)` returns, one after the other and only as many as `window_room` leaves room
for. It quits after the last one, or at once when there is none. A window is a subclass of
`plans/window.py:Window`:

    requests        how many requests it lasts
    open(report)    the start action (tell the agent what to watch); returns the event to note,
                    or None when the window is not wanted or could not open (it is then skipped)
    close(seen)     the end action, with the requests it saw (gather what the agent watched into
                    the session's RunData); it also runs for a window cut short at test stop
    phase(seen)     its line in the report's phases

The windows are the call paths (plans/call_paths.py), which of several paths keeps the memory
(plans/kept_paths.py) and the native window (plans/native.py: memray over K requests after a
native-leak verdict). Another is one more module, a `Window` subclass, returned from `windows`
by the plans that want it. While windows run the RSS sampler is off, since its readings would
count the windows as measured. The requests that fail count in no figure, and a window whose
requests keep failing ends the run early. The retention search has already started, in a
forked child of the target.
"""

from __future__ import annotations

from typing import Any

from analysis.model import Phase
from analysis.report import Report
from analysis.sequential import settled
from memsoak.locust.options import Settings
from memsoak.locust.plans.call_paths import CallPathWindow
from memsoak.locust.plans.kept_paths import KeptPathWindow
from memsoak.locust.plans.native import NativeWindow
from memsoak.locust.plans.window import Window
from memsoak.locust.session import Session

# Tracing starts this fraction of the warm-up before the baseline, not at it. A container that
# grew untraced (a leaking list) is not traced until it next reallocates, and then its whole
# buffer is traced at once: at the baseline that would count everything the warm-up leaked as
# growth of the measured run (measured: 66 KB/request reported for the seed's 40 KB). A list
# reallocates every 1/8 of its size, so a quarter of the warm-up gets it traced in time.
TRACE_IN_SHARE = 4
# Requests failing in a window before it ends early: the target has gone (killed, say).
WINDOW_MAX_FAILURES = 20


class Plan:
    open_ended = False  # requests go on after the last boundary until the plan ends the run
    shallow = False  # trace the series one frame deep, the suspects' paths in windows after it

    def __init__(self, session: Session) -> None:
        self.session = session
        self.settings: Settings = session.settings
        self.paths_depth: int | None = None  # once the series traces shallow: the windows' depth
        # Where the series ended (measured requests) once windows follow it, and the windows.
        self.series_end: int | None = None
        self._windows: list[Window] = []
        self._window: Window | None = None  # the one open
        self._window_started = 0
        self._window_end: int | None = None
        self._windows_done: list[Phase] = []
        self._series_report: Report | None = None  # what the windows are about
        self._window_failures = 0

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
        if self._window is not None:
            self._close_window(measured, last=True)
        return self.series_end, measured - self.series_end

    def window_request_failed(self) -> bool:
        """A request failed. True when it came after the series (a window's, or one in flight as a
        window ended), which counts in no figure; a window whose requests keep failing is to end
        early (`end_window_early`) once `window_failing` says so."""
        if self.series_end is None:
            return False
        self._window_failures += 1
        return True

    @property
    def window_failing(self) -> bool:
        return self._window_failures == WINDOW_MAX_FAILURES

    def end_window_early(self) -> None:
        """Close the open window with what it saw and end the run (not from a request listener:
        in a greenlet of its own)."""
        window, self._window = self._window, None
        if window is None:
            return
        session = self.session
        seen = (session.gate.completed if session.gate else 0) - self.settings.warmup - self._window_started
        session.event(f"window cut short: {self._window_failures} of its requests failed")
        window.close(max(0, seen - session.offset))
        self._window_end = None
        self._windows = []
        session.quit()

    def planned_measured(self) -> int | None:
        """The measured requests the plan runs at most; None for one bound by the clock."""
        return self.settings.requests

    def complete(self, measured_in_all: int) -> bool:
        """Whether the run went its whole course (a run cut short is no baseline for the history's
        regression check)."""
        return measured_in_all >= self.settings.requests

    def stopped_early(self, measured: int, measured_in_all: int, window: int) -> str:
        """The event of a run that did not go its course."""
        return f"stopped after {measured_in_all - window} of {self.settings.requests} measured requests"

    def phases(self, warmup: int, measured: int) -> list[Phase]:
        """What ran, in order, for the report: `warmup` and `measured` as it counts them."""
        session = self.session
        untraced = 0 if session.tracing_turned_on else session.series_frames
        snapshots = len(session.data.snapshots)
        return [
            Phase("warm-up requests", warmup, untraced, ""),
            Phase(
                "measured",
                measured,
                session.series_frames,
                f"{snapshots} snapshot{'s' if snapshots != 1 else ''}",
            ),
            *self._windows_done,
        ]

    def conclude(self, report: Report) -> Report:
        """The final report, as the plan sees it."""
        return report

    # -- what a plan does --------------------------------------------------------------------

    def with_trace_in(self, boundaries: list[int]) -> list[int]:
        """`boundaries` with one a quarter of the warm-up before the baseline, to turn tracing on."""
        lead = self.settings.warmup // TRACE_IN_SHARE
        return [self.settings.warmup - lead, *boundaries] if lead else boundaries

    def series_depth(self, status: dict[str, Any]) -> tuple[int | None, str]:
        """How deep to trace the series (None: the target's depth), and a note for the event:
        one frame when `shallow` and the target's depth is more, else the target's own."""
        depth = self.settings.frames or status.get("configured_frames")
        if self.shallow and isinstance(depth, int) and depth > 1 and not status.get("workers"):
            self.paths_depth = depth
            return 1, (
                f"; the verdict comes from these, then the suspects' call paths are watched "
                f"{depth} frames deep for a few more requests"
            )
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
        """The windows to run after the series, given the report it ended with: for a series
        traced shallow with suspects, the suspects' call paths, then, for lines several paths
        reach, which one keeps the memory; and the native window, which opens only when the
        verdict asks for it."""
        native: list[Window] = [NativeWindow(self.session)]
        if self.paths_depth is None or not report.suspects:
            return native
        return [
            CallPathWindow(self.session, self.paths_depth),
            KeptPathWindow(self.session, self.paths_depth),
            *native,
        ]

    def window_room(self, measured: int) -> int | None:
        """Requests left for windows after `measured` (None: no limit)."""
        return None

    def end_series(self, measured: int, report: Report) -> None:
        """From a boundary's action: the series is over at `measured` requests. Quit, or run the
        windows `report` calls for first."""
        session = self.session
        self._windows = self.windows(report) if session.gate is not None and session.can_move_end else []
        self._series_report = report
        self.series_end = measured
        if self._windows:
            # Before any window opens: the native one opens on what the search finds (a raw
            # buffer), and one that restarts tracing waits for it. Should none open, test stop
            # takes this answer.
            session.retention.start_early(report)
        if not self._open_next(measured):
            self.series_end = None
            session.quit()
            return
        session.sampler.stop()  # its readings would count the windows as measured

    def _open_next(self, measured: int) -> bool:
        """Open the next window that opens and fits; False when none is left."""
        session = self.session
        assert self.series_end is not None
        room = self.window_room(self.series_end)
        used = measured - self.series_end
        while self._windows and self._series_report is not None:
            window = self._windows.pop(0)
            if window.optional and room is not None and used + window.requests > room:
                continue
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

    def _close_window(self, measured: int, last: bool = False) -> None:
        """A window's end: its end action, then the next window, or the end of the run. `last`:
        at test stop, for a window cut short."""
        window, self._window = self._window, None
        self._window_end = None
        if window is not None:
            seen = measured - self._window_started
            window.close(seen)
            self._windows_done.append(window.phase(seen))
        if not last and not self._open_next(measured):
            self.session.quit()
