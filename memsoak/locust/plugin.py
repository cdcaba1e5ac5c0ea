"""The Locust plugin: exact budget, snapshots at warm-up end, checkpoints and test stop, reports.

Shaped like Locust's own contrib modules: one object, `register(environment)` wires its small
private listeners to Locust's events in one place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment

from analysis.model import RequestCounts, RunData, Sample
from analysis.report import Report, build_report
from memsoak.agent_client import AgentClient, AgentError, AgentTimeout
from memsoak.errors import MemsoakError
from memsoak.locust.gate import RequestGate, checkpoint_boundaries
from memsoak.locust.options import Settings
from memsoak.rundir import RunDir
from memsoak.summary import summary_lines

logger = logging.getLogger("memsoak")

EXIT_LEAK = 1
EXIT_TARGET_FAILED = 3
MAX_SAMPLES = 2000
# RSS samples that fail in a row before the target counts as gone (a timeout counts at once: it
# has already waited the whole agent timeout).
MAX_SAMPLE_FAILURES = 3
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
        self._snapshotting = False
        self._snapshot_paths: list[Path] = []
        self._sampler: gevent.Greenlet | None = None
        self._sample_interval = self.settings.sample_interval

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
        boundaries = checkpoint_boundaries(settings.warmup, settings.requests, settings.checkpoints)
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
        measured = max(0, gate.completed - self.settings.warmup)
        snapshots = self.data.snapshots
        if measured < self.settings.requests:
            self._event(f"stopped after {measured} of {self.settings.requests} measured requests")
        if snapshots and snapshots[-1].requests != measured and not self.target_failed:
            self._snapshot(measured, "final")
        if self.target_failed and snapshots and snapshots[-1].requests < measured:
            # Requests after the last snapshot hit a failing target and no snapshot measured
            # them: counting them would dilute every bytes-per-request figure.
            self._event(
                f"{measured - snapshots[-1].requests} requests after the last snapshot (at "
                f"{snapshots[-1].requests}) are left out of the per-request figures"
            )
            measured = snapshots[-1].requests
        self.data.requests = RequestCounts(
            warmup=min(gate.completed, self.settings.warmup), measured=measured, failed=self.failed_measured
        )
        self.data.locust_stats = _locust_stats(environment)
        try:
            self.data.snapshots = self.run_dir.load_snapshots(self._snapshot_paths)
        except MemsoakError as exc:
            self._event(f"reading the snapshots back failed, suspects are missing: {exc}")
        self.report = build_report(self.data)
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
        if measured == 0:
            if self._snapshot(0, "baseline"):
                self._measuring_since = time.monotonic()
                self._sampler = gevent.spawn(self._sample_forever)
        elif measured < settings.requests:
            self._snapshot(measured, "checkpoint")
        else:
            # The final snapshot is taken in test_stop, so a run ended any other way (Ctrl-C,
            # --run-time, the web UI's stop button) gets one too. quit() must not run in this
            # greenlet's caller chain: spawn it.
            self._quit()

    def _snapshot(self, measured: int, label: str) -> bool:
        self._snapshotting = True  # the target is paused by design: the sampler waits
        try:
            doc = self.agent.snapshot(MIN_SITE_BYTES)
            snapshot = self.run_dir.save_snapshot(doc, measured, label)
        except (AgentError, ValueError) as exc:
            self._target_failed(f"{label} snapshot at {measured} measured requests failed: {exc}")
            return False
        finally:
            self._snapshotting = False
        # Only the figures stay in memory; the sites are on disk until the report is built, so
        # the plugin's memory does not grow with each checkpoint of a long run (~1 MB each).
        self.data.snapshots.append(replace(snapshot, sites={}))
        if self.run_dir.last_snapshot_path is not None:
            self._snapshot_paths.append(self.run_dir.last_snapshot_path)
        self._event(
            f"{label} snapshot at {measured} requests: RSS {snapshot.rss_bytes:,} B, "
            f"paused the target {snapshot.duration_s:.2f} s"
        )
        # Counts as of this snapshot, so a run that ends here without test_stop (harness killed)
        # still reports per-request figures.
        self.data.requests = RequestCounts(self.settings.warmup, measured, self.failed_measured)
        self.run_dir.save_state(self.data, "running")
        return True

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
                status = self.agent.status()
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
            self.data.samples.append(
                Sample(
                    requests=max(0, gate.completed - self.settings.warmup),
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
