"""The Locust plugin: exact budget, snapshots at warm-up end, checkpoints and test stop, reports.

Shaped like Locust's own contrib modules: one object, `register(environment)` wires its small
private listeners to Locust's events in one place.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from locust.env import Environment

from analysis.call_paths import read_call_paths
from analysis.model import RequestCounts, RunData, Sample, Snapshot, Traceback
from analysis.regression import judge
from analysis.report import Report, Suspect, build_report
from analysis.sequential import (
    CALL_PATH_WINDOW,
    SHALLOW_MIN_CAP,
    confident_checkpoints,
    series_cap,
    settled,
)
from analysis.thresholds import Thresholds
from analysis.verdict import QUOTED_FAILURES
from analysis.watch import WINDOW_REQUESTS, CensusPoint, growth, quiet_verdict, watch_checkpoints
from analysis.writers import preload as preload_writers
from memsoak.agent_client import AgentClient, AgentError, AgentTimeout, AgentUnreachable
from memsoak.errors import MemsoakError
from memsoak.failures import exception_lines, request_failure
from memsoak.history import History, HistoryError, suspect_summaries
from memsoak.locust.gate import RequestGate, checkpoint_boundaries
from memsoak.locust.options import Settings
from memsoak.progress import ENV as PROGRESS_ENV
from memsoak.progress import progress_line, summary_line
from memsoak.protocol import MAX_CALLER_LINES
from memsoak.rundir import RunDir
from memsoak.snapshot_store import SnapshotStore
from memsoak.summary import summary_lines

logger = logging.getLogger("memsoak")

EXIT_LEAK = 1
EXIT_REGRESSION = 1
EXIT_TARGET_FAILED = 3
MAX_SAMPLES = 2000
# Tracing starts this fraction of the warm-up before the baseline, not at it. A container that
# grew untraced (a leaking list) is not traced until it next reallocates, and then its whole
# buffer is traced at once: at the baseline that would count everything the warm-up leaked as
# growth of the measured run (measured: 66 KB/request reported for the seed's 40 KB). A list
# reallocates every 1/8 of its size, so a quarter of the warm-up gets it traced in time.
TRACE_IN_SHARE = 4
# RSS samples that fail in a row before the target counts as gone (a timeout counts at once: it
# has already waited the whole agent timeout).
MAX_SAMPLE_FAILURES = 3
# Tracebacks holding less than this are left out of snapshots: at most this many bytes of error
# per site in a diff (0.03 B/request over 10,000 requests), for snapshots ~5x smaller and faster.
MIN_SITE_BYTES = 256
PROGRESS_INTERVAL_S = 0.5
RETENTION_SUSPECTS = 3
# How long a quit asked for during test_stop waits for it to write the reports: a final snapshot
# (up to --memsoak-agent-timeout), the retention search and the writers, with room to spare.
FINISH_WAIT_S = 600.0
# The agent stops watching call paths by itself after this, should nobody ask for them.
PATHS_WATCH_MAX_S = 120.0


class MemsoakPlugin:
    # Whether --until-confident may trace its series one frame deep and end with a call-path
    # window: that moves the end of the budget mid-run, which a distributed master's quotas do
    # not (yet) follow.
    SHALLOW_SETTLING = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.agent = AgentClient(settings.agent_url, settings.agent_token, timeout=settings.agent_timeout)
        self.run_dir = RunDir(settings.out)
        self.environment: Environment | None = None
        self.gate: RequestGate | None = None
        self.report: Report | None = None
        # `memsoak run` renders machine-readable progress lines; plain Locust keeps its own output.
        self.progress = os.environ.get(PROGRESS_ENV) == "1"
        self.history = History(settings.history) if settings.history else None
        self._snapshot_lock = Semaphore()  # the clock's checkpoint and the final one never overlap
        self._finishing: Event | None = None  # set once test_stop's reports are written
        self._reset()

    def _reset(self) -> None:
        self.data = RunData(snapshots=[], samples=[], requests=RequestCounts(0, 0, 0))
        self.store = SnapshotStore(self.data.snapshots)
        self.failed_measured = 0
        self.target_failed = False
        self.load_failed = False  # the load could not be completed (distributed: no worker left)
        self._measuring_since: float | None = None
        self._snapshotting = False
        self._sampler: gevent.Greenlet | None = None
        self._progress: gevent.Greenlet | None = None
        self._clock: gevent.Greenlet | None = None
        self._clock_done = False
        self._interrupted = False
        self._sample_interval = self.settings.sample_interval
        self.history_id: int | None = None
        self._tracing_turned_on = False
        # Watch mode: census readings, and once growth shows, the traced window's start and end
        # in measured requests (the report counts the requests before the window as warm-up).
        self._census: list[CensusPoint] = []
        self._offset = 0
        self._window_end: int | None = None
        self._window_pending = False
        # --until-confident with the series traced one frame deep: the depth wanted for the
        # suspects' call paths, where the series ended (measured requests) and where the window
        # watching the call paths ends.
        self._paths_depth: int | None = None
        self._series_end: int | None = None
        self._paths_window_end: int | None = None
        # A retention search started as the call-path window opened, and the suspects it is
        # about: test_stop takes its answer instead of searching at the end.
        self._early_retention: gevent.Greenlet | None = None
        self._early_retention_for: tuple[Traceback, ...] = ()

    def check_agent(self) -> None:
        """Raise MemsoakError (exit 2) when the agent does not answer or refuses the token. While
        nothing is listening yet, keep trying for `agent_wait` seconds: `memsoak run` starts the
        target and Locust side by side, and Locust is usually ready first."""
        deadline = time.monotonic() + self.settings.agent_wait
        while True:
            try:
                self.agent.status()
                return
            except AgentUnreachable as exc:
                if time.monotonic() >= deadline:
                    raise MemsoakError(str(exc)) from None
            except AgentError as exc:
                raise MemsoakError(str(exc)) from None
            time.sleep(0.05)

    def register(self, environment: Environment) -> None:
        self.environment = environment
        environment.memsoak = self  # type: ignore[attr-defined]  # the users' gate lookup
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stop.add_listener(self._on_test_stop_until_done)
        environment.events.request.add_listener(self._on_request)
        if environment.web_ui is not None:
            from memsoak.locust.webui import MemoryTab

            MemoryTab(self).install(environment.web_ui)
        environment.events.quitting.add_listener(self._on_quitting)
        if self.progress:  # a Locust process `memsoak run` started, and waits to end
            environment.events.quit.add_listener(self._on_quit)

    # -- listeners -------------------------------------------------------------------------

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        self._reset()
        self.data.parameters = self._parameters(environment)
        self.data.events.append(f"{time.strftime('%H:%M:%S')} test started")
        settings = self.settings
        if settings.duration_s is not None:
            # A soak: the only boundary is the end of warm-up; the clock drives the checkpoints.
            self.gate = self._make_soak_gate(settings.warmup)
        else:
            if settings.watch:
                boundaries = [
                    settings.warmup,
                    *(settings.warmup + n for n in watch_checkpoints(settings.requests)),
                ]
            elif settings.until_confident:
                series = series_cap(settings.requests, self._may_settle_shallow())
                boundaries = [
                    settings.warmup,
                    *(settings.warmup + n for n in confident_checkpoints(series)),
                ]
                if series < settings.requests:
                    boundaries.append(settings.warmup + settings.requests)
            else:
                boundaries = checkpoint_boundaries(settings.warmup, settings.requests, settings.checkpoints)
            lead = settings.warmup // TRACE_IN_SHARE
            if lead and not settings.watch:
                boundaries = [settings.warmup - lead, *boundaries]
            self.gate = self._make_gate(boundaries)
        self._history_start()
        if self.progress:
            self._progress = gevent.spawn(self._progress_forever)

    def _make_gate(self, boundaries: list[int]) -> RequestGate:
        return RequestGate(boundaries, self._on_boundary)

    def _make_soak_gate(self, warmup: int) -> RequestGate:
        return RequestGate([warmup], self._on_boundary, open_ended=True)

    def _end_soak(self) -> None:
        self._quit()

    def _on_quitting(self, **_: Any) -> None:
        # Locust fires `quitting` before test_stop only when a signal (Ctrl-C, SIGTERM) ends it.
        if self.gate is not None:
            self._interrupted = True

    @staticmethod
    def _on_quit(**_: Any) -> None:
        # Locust fires `quit` as it exits, everything written. The interpreter's exit would
        # collect garbage over the whole heap several times (0.08 s of every run, which
        # `memsoak run` waits for); frozen objects are left out of those collections.
        gc.freeze()

    def _on_test_stop_until_done(self, environment: Environment, **kwargs: Any) -> None:
        self._finishing = Event()
        try:
            self._on_test_stop(environment, **kwargs)
        finally:
            self._finishing.set()

    def _on_request(
        self, request_type: str = "", name: str = "", response: Any = None, exception: Any = None, **_: Any
    ) -> None:
        if exception is not None and self._measuring_since is not None:
            self.failed_measured += 1
            failure = request_failure(request_type, name, response, exception)
            # The first distinct ones: a hundred copies of one 500 say no more than one.
            if len(self.data.failures) < QUOTED_FAILURES and failure not in self.data.failures:
                self.data.failures.append(failure)

    def _on_test_stop(self, environment: Environment, **_: Any) -> None:
        gate = self.gate
        if gate is None:
            return
        gate.close()
        for greenlet in (self._sampler, self._progress):
            if greenlet is not None:
                greenlet.kill(block=False)
        with self._snapshot_lock:  # a checkpoint in progress finishes first
            if self._clock is not None:
                self._clock.kill(block=True)
        measured_in_all = max(0, gate.completed - self.settings.warmup)
        measured = measured_in_all - self._offset  # watch mode: the traced window only
        window = 0
        if self._series_end is not None:  # the call-path window's requests are no figure's
            measured, window = self._series_end, measured - self._series_end
            if not self.data.call_paths:  # cut short (Ctrl-C): take the hook off, keep what it saw
                self._gather_call_paths(measured + window)
        snapshots = self.data.snapshots
        complete = (
            self._clock_done
            if self.settings.duration_s is not None
            else measured_in_all >= self.settings.requests
        )
        if not complete and self.settings.duration_s is not None:
            elapsed = time.monotonic() - self._measuring_since if self._measuring_since else 0.0
            planned = self.settings.duration_s
            self._event(f"stopped after {measured} measured requests, {elapsed:.0f} s of {planned:g} s")
        elif not complete:
            self._event(
                f"stopped after {measured_in_all - window} of {self.settings.requests} measured requests"
            )
        if self._interrupted and self.target_failed:
            # A terminal's Ctrl-C reaches the target too: an agent that stopped answering then is
            # the interrupt, not a failure. The run ends at its last snapshot.
            self.target_failed = False
        elif snapshots and snapshots[-1].requests != measured and not self.target_failed:
            self._snapshot(measured, "final", required=not self._interrupted)
        if self.target_failed and snapshots and snapshots[-1].requests < measured:
            # Requests after the last snapshot hit a failing target and no snapshot measured
            # them: counting them would dilute every bytes-per-request figure.
            self._event(
                f"{measured - snapshots[-1].requests} requests after the last snapshot (at "
                f"{snapshots[-1].requests}) are left out of the per-request figures"
            )
        if (self._interrupted or self.target_failed) and snapshots:
            measured = snapshots[-1].requests
        self.data.requests = RequestCounts(
            warmup=min(gate.completed, self.settings.warmup) + self._offset,
            measured=measured,
            failed=self.failed_measured,
            window=window,
        )
        self.data.locust_stats = self._load_stats(environment)
        if self.failed_measured and self.settings.target_log is not None:
            self.data.target_errors = exception_lines(self.settings.target_log)
        analysed = self._for_analysis(self.data)
        self.report = build_report(analysed, self.settings.thresholds)
        # The search compares the suspects' tracebacks with the target's traces: as traced, not
        # as the call paths deepened them.
        traced = (
            build_report(replace(analysed, call_paths={}), self.settings.thresholds)
            if analysed.call_paths
            else self.report
        )
        # Before tracing is put back as it was: the search needs the traces.
        found = self._retention_for(traced)
        if found is not None:
            self.data.retention = found
            self.report = build_report(replace(analysed, retention=found), self.settings.thresholds)
        erred = self.report.verdict.rule == "requests-failed"
        if erred:
            # For `memsoak run`'s last line; the summary below shows the explanation already.
            stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
            self.data.events.append(
                f"{time.strftime('%H:%M:%S')} requests failed at {stamp}: {self.report.verdict.explanation}"
            )
        elif self.settings.watch and self._window_end is None:
            self.report = replace(self.report, verdict=quiet_verdict(self._census, self.report.thresholds))
        self._restore_tracing()
        # A run whose requests failed is no baseline for the regression check either.
        status = "failed" if self.target_failed or self.load_failed or erred else "finished"
        self.run_dir.save_state(self.data, status)
        paths = self.run_dir.write_reports(self.report, self.settings.formats or None)
        if self.progress:
            print(summary_line(self.report, paths), flush=True)
        else:
            for line in summary_lines(self.report, paths):
                print(line, flush=True)
        # The history tells a run cut short (Ctrl-C, --max-time) from one that ran its course:
        # only the latter are a baseline for the regression check.
        regressed = self._history_finish(
            status if status == "failed" or complete else "interrupted", self.report
        )
        if self.target_failed or self.load_failed or erred:
            environment.process_exit_code = EXIT_TARGET_FAILED
        elif self.settings.fail_on_leak and self.report.verdict.kind == "leak":
            environment.process_exit_code = EXIT_LEAK
        elif self.settings.fail_on_regression and regressed:
            environment.process_exit_code = EXIT_REGRESSION
        self.gate = None

    # -- the run ---------------------------------------------------------------------------

    def _on_boundary(self, total_completed: int) -> None:
        settings = self.settings
        measured = total_completed - settings.warmup
        if measured < 0:
            self._start_tracing()
            return
        if settings.watch and measured > 0:
            if self._window_pending:
                self._open_window(measured)
            elif self._window_end is None:
                self._watch(measured)
            elif measured >= self._window_end or measured >= settings.requests:
                self._quit()
            elif self._checkpoint(measured - self._offset):
                self._stop_if_settled(measured - self._offset)
            return
        if settings.watch:
            self._measuring_since = time.monotonic()
            self._watch(0)
        elif measured == 0:
            if self._start_tracing():
                self._snapshot(0, "baseline", resume_load=True, on_taken=self._start_measuring)
        elif measured == self._paths_window_end:
            self._close_paths_window(measured)
        elif measured < settings.requests:
            if self._checkpoint(measured):
                self._stop_if_settled(measured)
        else:
            # The final snapshot is taken in test_stop, so a run ended any other way (Ctrl-C,
            # --run-time, the web UI's stop button) gets one too. quit() must not run in this
            # greenlet's caller chain: spawn it.
            self._quit()

    def _watch(self, measured: int) -> None:
        """One census reading with tracing off; once the census shows growth, trace a window."""
        try:
            if not self._census:
                # Once: the census' block count is read just after full collections
                # (memsoak/agent/census.py), and this makes the first one now.
                self.agent.collect_garbage()
            status = self.agent.status()
        except AgentError as exc:
            self._target_failed(f"census at {measured} measured requests failed: {exc}")
            return
        self._census.append(
            CensusPoint(
                measured,
                status["rss_bytes"],
                int(status.get("settled_blocks", status.get("allocated_blocks", 0))),  # older agents
            )
        )
        since = self._measuring_since or time.monotonic()
        self.data.samples.append(Sample(measured, time.monotonic() - since, status["rss_bytes"], 0))
        reason = growth(self._census)
        if measured >= self.settings.requests:
            self._quit()
            return
        if reason is None:
            return
        self._event(f"watch: {reason} after {measured:,} requests; tracing {WINDOW_REQUESTS:,} requests")
        self._window_pending = self._start_tracing()  # the window opens at the next census point

    def _open_window(self, measured: int) -> None:
        self._window_pending = False
        self._offset = measured
        self._window_end = measured + WINDOW_REQUESTS
        self.data.samples.clear()
        self._snapshot(0, "baseline", resume_load=True, on_taken=self._start_measuring)

    def _start_measuring(self) -> None:
        """The baseline's state is taken: measured requests count from now (the load may resume
        before the baseline's document is in, and the next checkpoint's reading must count)."""
        self._measuring_since = time.monotonic()
        self._sampler = gevent.spawn(self._sample_forever)
        if self.settings.duration_s is not None and not self.settings.watch:
            self._clock = gevent.spawn(self._soak_clock, self._measuring_since)

    def _may_settle_shallow(self) -> bool:
        settings = self.settings
        return (
            self.SHALLOW_SETTLING
            and settings.until_confident
            and not settings.watch
            and settings.duration_s is None
            and settings.requests >= SHALLOW_MIN_CAP
        )

    def _start_tracing(self) -> bool:
        """Warm-up runs untraced when the target was started with tracing off (`memsoak run`
        does that): tracing starts here, just before the baseline, at the target's depth, or one
        frame deep for a series that settles shallow (`--until-confident`)."""
        try:
            status = self.agent.status()
            if status.get("tracing"):
                return True
            depth = self.settings.frames or status.get("configured_frames")
            if (
                self._may_settle_shallow()
                and isinstance(depth, int)
                and depth > 1
                and not status.get("workers")
            ):
                self._paths_depth = depth
            status = self.agent.set_tracing(True, 1 if self._paths_depth else self.settings.frames or None)
        except AgentError as exc:
            self._target_failed(f"turning tracing on at the baseline failed: {exc}")
            return False
        self._tracing_turned_on = True
        how = f"{status.get('frames_limit')} frames"
        if self._paths_depth:
            how += (
                f"; the verdict settles on these, then the suspects' call paths are watched for "
                f"{CALL_PATH_WINDOW} requests, {self._paths_depth} frames deep"
            )
        self._event(f"warm-up ran untraced; tracing on at the baseline ({how})")
        return True

    def _restore_tracing(self) -> None:
        """Leave a target that outlives the run as untraced as it was found."""
        if self._tracing_turned_on and not self.target_failed:
            try:
                self.agent.set_tracing(False)
            except AgentError as exc:
                self._event(f"turning tracing off at the end failed: {exc}")
            self._tracing_turned_on = False

    def snapshots_for_analysis(self, thresholds: Thresholds) -> list[Snapshot]:
        """The run's snapshots with the sites analysis reads (the store holds only some)."""
        snapshots = self.store.for_analysis(thresholds.suspect_min_total_bytes)
        while self.store.unreadable:
            self._event(f"snapshot file unreadable, its sites count as empty: {self.store.unreadable.pop(0)}")
        return snapshots

    def _for_analysis(self, data: RunData) -> RunData:
        return replace(data, snapshots=self.snapshots_for_analysis(self.settings.thresholds))

    def _stop_if_settled(self, measured: int) -> None:
        data = self.data
        partial = RunData(
            snapshots=self.snapshots_for_analysis(self.settings.thresholds),
            samples=[s for s in data.samples if s.requests <= measured],
            requests=RequestCounts(self.settings.warmup + self._offset, measured, self.failed_measured),
        )
        report = build_report(partial, self.settings.thresholds)
        reason = settled(report, partial.snapshots)
        if reason is not None:
            self._event(f"verdict settled after {measured:,} measured requests: {reason}")
            self._end_series(measured, report)
        elif self._paths_depth and report.suspects and measured >= series_cap(self.settings.requests, True):
            self._end_series(measured, report)  # not settled: the cap's last requests are the window

    def _end_series(self, measured: int, report: Report) -> None:
        """The series is over: quit, or, when it was traced one frame deep and has suspects,
        watch the call paths reaching their lines for a few more requests."""
        if self._paths_depth is None or not report.suspects or self.gate is None:
            self._quit()
            return
        lines = list(dict.fromkeys((s.file, s.line) for s in report.suspects))[:MAX_CALLER_LINES]
        try:
            self.agent.watch_callers(lines, self._paths_depth, PATHS_WATCH_MAX_S)
        except AgentError as exc:
            self._event(f"call paths not watched, tracebacks stay one frame deep: {exc}")
            self._quit()
            return
        self._series_end = measured
        if self._retention_wanted(report):
            # The window's requests change nothing the search looks at (the suspects, their
            # tracebacks as traced): it runs meanwhile, in a child of the target.
            self._early_retention = gevent.spawn(self._find_retention, report, True)
            self._early_retention_for = tuple(s.traceback for s in _retention_suspects(report))
        if self._sampler is not None:
            self._sampler.kill(block=False)  # its readings would count the window as measured
        self._paths_window_end = measured + CALL_PATH_WINDOW
        self.gate.end_at(self.gate.completed + CALL_PATH_WINDOW)
        self._event(
            f"watching the call paths to {len(lines)} suspect line(s) for {CALL_PATH_WINDOW} requests"
        )

    def _retention_for(self, report: Report) -> list[dict[str, Any]] | None:
        """The retention paths of `report`'s suspects: those of the search started as the
        call-path window opened, if it was about them (a run cut short may have others), else
        from a search now."""
        early, self._early_retention = self._early_retention, None
        wanted = self._retention_wanted(report)
        asked_for = tuple(s.traceback for s in _retention_suspects(report))
        if early is not None and wanted and self._early_retention_for == asked_for:
            answer: list[dict[str, Any]] | None = early.get()
            return answer
        if early is not None:
            early.kill(block=False)
        return self._find_retention(report) if wanted else None

    def _close_paths_window(self, measured: int) -> None:
        self._gather_call_paths(measured)
        self._quit()

    def _gather_call_paths(self, measured: int) -> None:
        try:
            self.data.call_paths = self.agent.callers()
        except AgentError as exc:
            self._event(f"call paths not gathered, tracebacks stay one frame deep: {exc}")
        else:
            self._event(
                f"call paths: {len(read_call_paths(self.data.call_paths))} suspect line(s) reached "
                f"in {measured - (self._series_end or 0)} requests"
            )

    def _soak_clock(self, started: float) -> None:
        """Checkpoints every `checkpoint_every_s` from the baseline, then the end at `duration_s`.
        Times are from the baseline, so a slow snapshot delays no later checkpoint (it may
        swallow one, which is then skipped)."""
        settings = self.settings
        assert settings.duration_s is not None and settings.checkpoint_every_s is not None
        every, end = settings.checkpoint_every_s, started + settings.duration_s
        step = 1
        while started + step * every < end - every / 2:  # no checkpoint just before the end
            gevent.sleep(max(0.0, started + step * every - time.monotonic()))
            gate = self.gate
            if gate is None or gate.closed:
                return
            gate.drain(
                lambda completed: self._snapshot(completed - settings.warmup, "checkpoint", resume_load=True)
            )
            step = max(step + 1, int((time.monotonic() - started) / every) + 1)
        gevent.sleep(max(0.0, end - time.monotonic()))
        self._clock_done = True
        self._end_soak()

    def _checkpoint(self, measured: int) -> bool:
        """A checkpoint snapshot; True when it is in and `--until-confident` should look at it
        (which may end the run, so the load stays held until then)."""
        until_confident = self.settings.until_confident
        return self._snapshot(measured, "checkpoint", resume_load=not until_confident) and until_confident

    def _snapshot(
        self,
        measured: int,
        label: str,
        required: bool = True,
        resume_load: bool = False,
        on_taken: Callable[[], None] | None = None,
    ) -> bool:
        """`resume_load`: let the load go on once the agent has taken the target's state, while
        the document arrives (an agent that forks its snapshots says so first: the load then
        waits for the collection and the fork, not for the whole document). `on_taken` runs
        then too, before the load resumes."""
        # A reading just before the snapshot: RSS growth between snapshots is what requests drive,
        # apart from the snapshots' own footprint (analysis/driven.py).
        try:
            self._sample(measured)
        except AgentError as exc:
            self._event(f"RSS reading before the {label} snapshot failed: {exc}")
        with self._snapshot_lock:
            self._snapshotting = True  # the target is paused by design: the sampler waits
            try:
                gate = self.gate

                def taken() -> None:
                    if on_taken is not None:
                        on_taken()
                    if resume_load and gate is not None:
                        gate.resume()

                doc = self.agent.snapshot(MIN_SITE_BYTES, taken if resume_load or on_taken else None)
                snapshot, path = self.run_dir.write_snapshot(doc, measured, label)
            except (AgentError, ValueError) as exc:
                message = f"{label} snapshot at {measured} measured requests failed: {exc}"
                if required:
                    self._target_failed(message)
                else:
                    self._event(f"{message}; the run ends at the last snapshot")
                return False
            finally:
                self._snapshotting = False
            self.store.add(snapshot, path)
            child_s = doc.get("child_s")
            # What run.json says until the end: a run killed now reports up to this snapshot.
            self.data.requests = RequestCounts(self.settings.warmup, measured, self.failed_measured)
            self._event(
                f"{label} snapshot at {measured} requests: RSS {snapshot.rss_bytes:,} B, "
                f"paused the target {snapshot.duration_s:.2f} s"
                + (f" (built in {child_s:.2f} s by a forked child)" if isinstance(child_s, float) else "")
            )
            self.run_dir.save_state(self.data, "running")
            self._history_progress()
            return True

    # -- the run history ---------------------------------------------------------------------

    def _plan(self) -> str:
        settings = self.settings
        if settings.duration_s is not None:
            return f"{settings.duration_s:g} s"
        return f"{settings.requests} requests"

    def _history_start(self) -> None:
        if self.history is None:
            return
        settings = self.settings
        try:
            self.history_id = self.history.start(
                scenario=settings.scenario,
                target=settings.target,
                revision=settings.revision,
                run_dir=str(settings.out.resolve()),
                plan=self._plan(),
            )
        except HistoryError as exc:
            self._history_failed(exc)

    def _history_progress(self) -> None:
        """Cheap numbers for an unfinished run: the two-point slopes from baseline to now."""
        snapshots = self.data.snapshots
        if self.history is None or self.history_id is None or len(snapshots) < 2:
            return
        first, last = snapshots[0], snapshots[-1]
        measured = last.requests - first.requests
        if measured <= 0:
            return
        try:
            self.history.progress(
                self.history_id,
                measured=last.requests,
                bytes_per_request=(last.traced_bytes - first.traced_bytes) / measured,
                rss_per_request=(last.rss_bytes - first.rss_bytes) / measured,
            )
        except HistoryError as exc:
            self._history_failed(exc)

    def _history_finish(self, status: str, report: Report) -> bool:
        """Close this run's row; True when it regressed against the scenario's recent runs."""
        if self.history is None or self.history_id is None:
            return False
        settings = self.settings
        try:
            self.history.finish(
                self.history_id,
                status=status,
                verdict=report.verdict.kind,
                measured=report.requests.measured,
                bytes_per_request=report.traced.per_request,
                rss_per_request=report.rss.per_request,
                suspects=suspect_summaries(report.suspects),
            )
            earlier = self.history.previous_finished(settings.scenario, self.history_id, 10)
        except HistoryError as exc:
            self._history_failed(exc)
            return False
        print(f"memsoak: history: run {self.history_id} in {self.history.path}", flush=True)
        if status != "finished":
            return False
        result = judge(report.traced.per_request, [r.bytes_per_request or 0.0 for r in earlier])
        if result.judged or settings.fail_on_regression:
            word = "REGRESSION" if result.regressed else "no regression" if result.judged else "not judged"
            print(f"memsoak: regression check: {word}: {result.explanation}", flush=True)
        return result.regressed

    def _history_failed(self, exc: HistoryError) -> None:
        self._event(f"run history not recorded: {exc}")
        logger.error("memsoak: %s", exc)
        self.history_id = None

    def _sample_forever(self) -> None:
        failures = 0
        while True:
            gevent.sleep(self._sample_interval)
            gate = self.gate
            if gate is None or self._measuring_since is None:
                return
            if self._snapshotting:
                continue
            try:
                self._sample(max(0, gate.completed - self.settings.warmup - self._offset))
            except AgentError as exc:
                if self._snapshotting:  # a snapshot started meanwhile and held the agent up
                    continue
                failures += 1
                if isinstance(exc, AgentTimeout) or failures >= MAX_SAMPLE_FAILURES:
                    self._target_failed(f"the agent stopped answering: {exc}")
                    return
                self._event(f"RSS sample failed: {exc}")
                continue
            failures = 0

    def _sample(self, measured: int) -> None:
        """One RSS reading; AgentError when the agent does not answer."""
        if self._measuring_since is None:
            return
        status = self.agent.status()
        self.data.samples.append(
            Sample(
                requests=measured,
                elapsed_s=time.monotonic() - self._measuring_since,
                rss_bytes=status["rss_bytes"],
                traced_bytes=status["traced_bytes"],
            )
        )
        if len(self.data.samples) > MAX_SAMPLES:
            # Keep the series bounded however long the run: halve its resolution.
            self.data.samples[:] = self.data.samples[::2]
            self._sample_interval *= 2

    def _retention_wanted(self, report: Report) -> bool:
        return (
            report.verdict.kind == "leak"
            and bool(_retention_suspects(report))
            and not self.target_failed
            and self.settings.retention_seconds > 0
        )

    def _find_retention(self, report: Report, in_window: bool = False) -> list[dict[str, Any]] | None:
        """Ask the agent what keeps the leak suspects alive (bounded by --memsoak-retention-seconds);
        `in_window`: during the call-path window, in a forked child of the target (the load goes
        on meanwhile). `report`'s suspects must have their tracebacks as traced (not deepened by
        call paths): the agent compares them with its traces. None when not asked or failed: a
        failure costs the paths, never the run."""
        if not self._retention_wanted(report):
            return None
        leaking = _retention_suspects(report)
        live = {s.traceback: s.growth[-1] for s in leaking}
        started = time.monotonic()
        # The reports' imports run while the target searches (they are the Locust side's CPU,
        # the search the target's), not after it. Only here, where this greenlet waits on the
        # agent anyway: a yield anywhere else in test_stop lets a master whose last worker is
        # gone quit before the reports are written.
        preloading = gevent.spawn(preload_writers, self.settings.formats or None)
        try:
            answer = self.agent.retention(
                [
                    {"traceback": [[f.file, f.line] for f in tb], "live_bytes": size}
                    for tb, size in live.items()
                ],
                max_seconds=self.settings.retention_seconds,
                fork=in_window,
            )
        except AgentError as exc:
            self._event(f"retention search failed: {exc}")
            return None
        finally:
            preloading.join()
        found = answer.get("suspects")
        if not isinstance(found, list):
            return None
        docs = [doc for doc in found if isinstance(doc, dict)]
        self._event(
            f"retention search: {sum(1 for d in docs if d.get('found') is True)} of {len(leaking)} "
            f"suspect(s) traced to a root in {time.monotonic() - started:.1f} s"
            + (" (in a forked child, during the call-path window)" if in_window else "")
        )
        return docs

    def latest_reading(self) -> Sample | Snapshot | None:
        """The most recent reading of the target's memory: a sample or a snapshot."""
        readings: list[Sample | Snapshot] = [*self.data.samples[-1:], *self.data.snapshots[-1:]]
        return max(readings, key=lambda r: r.requests, default=None)

    def latest_memory(self) -> tuple[int | None, int | None]:
        """The target's RSS and traced bytes at the last reading."""
        latest = self.latest_reading()
        return (latest.rss_bytes, latest.traced_bytes) if latest is not None else (None, None)

    def _progress_forever(self) -> None:
        while self.gate is not None:
            gate = self.gate
            rss, traced = self.latest_memory()
            stats = self.environment.stats.total if self.environment else None
            print(
                progress_line(
                    completed=gate.completed,
                    warmup=self.settings.warmup,
                    requests=self.settings.requests,
                    rps=stats.current_rps if stats is not None else 0.0,
                    rss_bytes=rss,
                    traced_bytes=traced,
                ),
                flush=True,
            )
            gevent.sleep(PROGRESS_INTERVAL_S)

    def _target_failed(self, message: str) -> None:
        if self.target_failed:
            return
        self.target_failed = True
        gate = self.gate
        measured = max(0, gate.completed - self.settings.warmup) if gate else 0
        since = self._measuring_since
        elapsed = f", {time.monotonic() - since:.1f} s into the measured run" if since is not None else ""
        self._event(
            f"target failed at {time.strftime('%Y-%m-%d %H:%M:%S %z')} after {measured} measured "
            f"requests{elapsed}: {message}"
        )
        logger.error("memsoak: %s", message)
        self._quit()

    def _quit(self) -> None:
        if self.gate is not None:
            self.gate.close()
        runner = self.environment.runner if self.environment else None
        if runner is not None:
            # With the web UI up, stop the load but keep the UI (and its Memory tab) serving.
            headless = self.environment is None or self.environment.web_ui is None
            gevent.spawn(self._after_test_stop, runner.quit if headless else runner.stop)

    def _after_test_stop(self, action: Callable[[], None]) -> None:
        """Run `action` (a quit) once test_stop, if it is under way, has written the reports: a
        quit kills the runner's greenlets, test_stop's among them when Locust fired it from one
        (a master stops from its heartbeat greenlet when the last worker goes missing)."""
        finishing = self._finishing
        if finishing is not None:
            finishing.wait(FINISH_WAIT_S)
        action()

    def _event(self, message: str) -> None:
        self.data.events.append(f"{time.strftime('%H:%M:%S')} {message}")
        if self.progress:
            print(f"memsoak: {message}", flush=True)

    def _load_stats(self, environment: Environment) -> dict[str, object]:
        return _locust_stats(environment)

    def _parameters(self, environment: Environment) -> dict[str, object]:
        options = environment.parsed_options
        params: dict[str, object] = {
            k: v for k, v in asdict(self.settings).items() if k not in ("agent_token", "out")
        }
        params["out"] = str(self.settings.out)
        if options is not None:
            params.update(
                users=getattr(options, "num_users", None),
                spawn_rate=getattr(options, "spawn_rate", None),
                host=getattr(options, "host", None),
                locustfile=getattr(options, "locustfile", None),
            )
        try:
            status = self.agent.status()
            params.update(target_pid=status.get("pid"), frames=status.get("frames_limit"))
        except AgentError as exc:
            self._event(f"agent status failed at start: {exc}")
        return params


def _retention_suspects(report: Report) -> list[Suspect]:
    """The suspects a retention search asks about: the steadily growing ones, first few."""
    return [s for s in report.suspects if s.steady][:RETENTION_SUSPECTS]


def _locust_stats(environment: Environment) -> dict[str, object]:
    total = environment.stats.total
    return {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": round(total.total_rps, 1),
        "avg_ms": round(total.avg_response_time, 2),
        "p50_ms": total.get_response_time_percentile(0.5),
        "p95_ms": total.get_response_time_percentile(0.95),
        "p99_ms": total.get_response_time_percentile(0.99),
        "max_ms": total.max_response_time,
    }
