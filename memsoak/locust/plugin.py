"""The Locust plugin: exact budget, snapshots at warm-up end, checkpoints and test stop, reports.

Shaped like Locust's own contrib modules: one object, `register(environment)` wires its small
private listeners to Locust's events in one place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from typing import Any

import gevent
from locust.env import Environment

from analysis.model import RequestCounts, RunData, Sample
from analysis.report import Report, build_report
from analysis.sequential import confident_checkpoints, settled
from analysis.watch import WINDOW_REQUESTS, CensusPoint, growth, quiet_verdict, watch_checkpoints
from memsoak.agent_client import AgentClient, AgentError
from memsoak.errors import MemsoakError
from memsoak.locust.gate import RequestGate, checkpoint_boundaries
from memsoak.locust.options import Settings
from memsoak.rundir import RunDir
from memsoak.summary import summary_lines

logger = logging.getLogger("memsoak")

EXIT_LEAK = 1
EXIT_TARGET_FAILED = 3
MAX_SAMPLES = 2000
# Tracing starts this fraction of the warm-up before the baseline, not at it. A container that
# grew untraced (a leaking list) is not traced until it next reallocates, and then its whole
# buffer is traced at once: at the baseline that would count everything the warm-up leaked as
# growth of the measured run (measured: 66 KB/request reported for the seed's 40 KB). A list
# reallocates every 1/8 of its size, so a quarter of the warm-up gets it traced in time.
TRACE_IN_SHARE = 4
# Tracebacks holding less than this are left out of snapshots: at most this many bytes of error
# per site in a diff (0.03 B/request over 10,000 requests), for snapshots ~5x smaller and faster.
MIN_SITE_BYTES = 256


class MemsoakPlugin:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.agent = AgentClient(settings.agent_url, settings.agent_token, timeout=settings.agent_timeout)
        self.run_dir = RunDir(settings.out)
        self.environment: Environment | None = None
        self.gate: RequestGate | None = None
        self.report: Report | None = None
        self._reset()

    def _reset(self) -> None:
        self.data = RunData(snapshots=[], samples=[], requests=RequestCounts(0, 0, 0))
        self.failed_measured = 0
        self.target_failed = False
        self._measuring_since: float | None = None
        self._sampler: gevent.Greenlet | None = None
        self._sample_interval = self.settings.sample_interval
        self._tracing_turned_on = False
        # Watch mode: census readings, and once growth shows, the traced window's start and end
        # in measured requests (the report counts the requests before the window as warm-up).
        self._census: list[CensusPoint] = []
        self._offset = 0
        self._window_end: int | None = None
        self._window_pending = False

    def check_agent(self) -> None:
        """Raise MemsoakError (exit 2) when the agent does not answer or refuses the token."""
        try:
            self.agent.status()
        except AgentError as exc:
            raise MemsoakError(str(exc)) from None

    def register(self, environment: Environment) -> None:
        self.environment = environment
        environment.memsoak = self  # type: ignore[attr-defined]  # the users' gate lookup
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stop.add_listener(self._on_test_stop)
        environment.events.request.add_listener(self._on_request)

    # -- listeners -------------------------------------------------------------------------

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        self._reset()
        self.data.parameters = self._parameters(environment)
        self.data.events.append(f"{time.strftime('%H:%M:%S')} test started")
        settings = self.settings
        if settings.watch:
            boundaries = [
                settings.warmup,
                *(settings.warmup + n for n in watch_checkpoints(settings.requests)),
            ]
        elif settings.until_confident:
            boundaries = [
                settings.warmup,
                *(settings.warmup + n for n in confident_checkpoints(settings.requests)),
            ]
        else:
            boundaries = checkpoint_boundaries(settings.warmup, settings.requests, settings.checkpoints)
        lead = settings.warmup // TRACE_IN_SHARE
        if lead and not settings.watch:
            boundaries = [settings.warmup - lead, *boundaries]
        self.gate = RequestGate(boundaries, self._on_boundary)

    def _on_request(self, exception: Any = None, **_: Any) -> None:
        if exception is not None and self._measuring_since is not None:
            self.failed_measured += 1

    def _on_test_stop(self, environment: Environment, **_: Any) -> None:
        gate = self.gate
        if gate is None:
            return
        gate.close()
        if self._sampler is not None:
            self._sampler.kill(block=False)
        measured_in_all = max(0, gate.completed - self.settings.warmup)
        measured = measured_in_all - self._offset
        snapshots = self.data.snapshots
        if measured_in_all < self.settings.requests:
            self._event(f"stopped after {measured_in_all} of {self.settings.requests} measured requests")
        if snapshots and snapshots[-1].requests != measured and not self.target_failed:
            self._snapshot(measured, "final")
        self._restore_tracing()
        self.data.requests = RequestCounts(
            warmup=min(gate.completed, self.settings.warmup) + self._offset,
            measured=measured,
            failed=self.failed_measured,
        )
        self.data.locust_stats = _locust_stats(environment)
        self.report = build_report(self.data)
        if self.settings.watch and self._window_end is None:
            self.report = replace(self.report, verdict=quiet_verdict(self._census, self.report.thresholds))
        status = "failed" if self.target_failed else "finished"
        self.run_dir.save_state(self.data, status)
        paths = self.run_dir.write_reports(self.report)
        for line in summary_lines(self.report, paths):
            print(line, flush=True)
        if self.target_failed:
            environment.process_exit_code = EXIT_TARGET_FAILED
        elif self.settings.fail_on_leak and self.report.verdict.kind == "leak":
            environment.process_exit_code = EXIT_LEAK
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
            elif self._snapshot(measured - self._offset, "checkpoint") and settings.until_confident:
                self._stop_if_settled(measured - self._offset)
            return
        if settings.watch:
            self._measuring_since = time.monotonic()
            self._watch(0)
        elif measured == 0:
            if self._start_tracing() and self._snapshot(0, "baseline"):
                self._measuring_since = time.monotonic()
                self._sampler = gevent.spawn(self._sample_forever)
        elif measured < settings.requests:
            if self._snapshot(measured, "checkpoint") and settings.until_confident:
                self._stop_if_settled(measured)
        else:
            # The final snapshot is taken in test_stop, so a run ended any other way (Ctrl-C,
            # --run-time, the web UI's stop button) gets one too. quit() must not run in this
            # greenlet's caller chain: spawn it.
            self._quit()

    def _watch(self, measured: int) -> None:
        """One census reading with tracing off; once the census shows growth, trace a window."""
        try:
            status = self.agent.status()
        except AgentError as exc:
            self._target_failed(f"census at {measured} measured requests failed: {exc}")
            return
        self._census.append(
            CensusPoint(measured, status["rss_bytes"], int(status.get("allocated_blocks", 0)))
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
        if self._snapshot(0, "baseline"):
            self._measuring_since = time.monotonic()
            self._sampler = gevent.spawn(self._sample_forever)

    def _start_tracing(self) -> bool:
        """Warm-up runs untraced when the target was started with tracing off (`memsoak run`
        does that): tracing starts here, just before the baseline, at the target's depth."""
        try:
            if self.agent.status().get("tracing"):
                return True
            status = self.agent.set_tracing(True, self.settings.frames or None)
        except AgentError as exc:
            self._target_failed(f"turning tracing on at the baseline failed: {exc}")
            return False
        self._tracing_turned_on = True
        self._event(f"warm-up ran untraced; tracing on at the baseline ({status.get('frames_limit')} frames)")
        return True

    def _restore_tracing(self) -> None:
        """Leave a target that outlives the run as untraced as it was found."""
        if self._tracing_turned_on and not self.target_failed:
            try:
                self.agent.set_tracing(False)
            except AgentError as exc:
                self._event(f"turning tracing off at the end failed: {exc}")
            self._tracing_turned_on = False

    def _stop_if_settled(self, measured: int) -> None:
        data = self.data
        partial = RunData(
            snapshots=data.snapshots,
            samples=[s for s in data.samples if s.requests <= measured],
            requests=RequestCounts(self.settings.warmup + self._offset, measured, self.failed_measured),
        )
        reason = settled(build_report(partial), data.snapshots)
        if reason is not None:
            self._event(f"verdict settled after {measured:,} measured requests: {reason}")
            self._quit()

    def _snapshot(self, measured: int, label: str) -> bool:
        try:
            doc = self.agent.snapshot(MIN_SITE_BYTES)
            snapshot = self.run_dir.save_snapshot(doc, measured, label)
        except (AgentError, ValueError) as exc:
            self._target_failed(f"{label} snapshot at {measured} measured requests failed: {exc}")
            return False
        self.data.snapshots.append(snapshot)
        self._event(
            f"{label} snapshot at {measured} requests: RSS {snapshot.rss_bytes:,} B, "
            f"paused the target {snapshot.duration_s:.2f} s"
        )
        self.run_dir.save_state(self.data, "running")
        return True

    def _sample_forever(self) -> None:
        while True:
            gevent.sleep(self._sample_interval)
            gate = self.gate
            if gate is None or self._measuring_since is None:
                return
            try:
                status = self.agent.status()
            except AgentError as exc:
                self._event(f"RSS sample failed: {exc}")
                continue
            self.data.samples.append(
                Sample(
                    requests=max(0, gate.completed - self.settings.warmup - self._offset),
                    elapsed_s=time.monotonic() - self._measuring_since,
                    rss_bytes=status["rss_bytes"],
                    traced_bytes=status["traced_bytes"],
                )
            )
            if len(self.data.samples) > MAX_SAMPLES:
                # Keep the series bounded however long the run: halve its resolution.
                self.data.samples[:] = self.data.samples[::2]
                self._sample_interval *= 2

    def _target_failed(self, message: str) -> None:
        self.target_failed = True
        self._event(message)
        logger.error("memsoak: %s", message)
        self._quit()

    def _quit(self) -> None:
        if self.gate is not None:
            self.gate.close()
        runner = self.environment.runner if self.environment else None
        if runner is not None:
            gevent.spawn(runner.quit)

    def _event(self, message: str) -> None:
        self.data.events.append(f"{time.strftime('%H:%M:%S')} {message}")

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
