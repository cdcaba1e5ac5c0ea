"""The Locust plugin: Locust's events wired to a run plan.

Shaped like Locust's own contrib modules: one object, `register(environment)` wires its small
private listeners to Locust's events in one place. What a run does at its boundaries is its
plan's (memsoak/locust/plans/), what it gathered is its session's (memsoak/locust/session.py);
this module starts and ends them, and quits Locust when the plan says so.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import gevent
from gevent.event import Event
from locust.env import Environment

from analysis.model import RunData, Sample, Snapshot
from analysis.report import Report
from analysis.thresholds import Thresholds
from analysis.verdict import QUOTED_FAILURES
from memsoak.agent_client import AgentClient, AgentError, AgentUnreachable
from memsoak.errors import MemsoakError
from memsoak.failures import request_failure
from memsoak.history import History
from memsoak.locust.failing import failures_settle_it
from memsoak.locust.finish import finish
from memsoak.locust.gate import RequestGate
from memsoak.locust.options import Settings
from memsoak.locust.plans import Plan, plan_for
from memsoak.locust.progress_printer import ProgressPrinter
from memsoak.locust.session import Session
from memsoak.locust.state import Gate
from memsoak.progress import ENV as PROGRESS_ENV
from memsoak.rundir import RunDir
from memsoak.snapshot_store import SnapshotStore

# How long a quit asked for during test_stop waits for it to write the reports: a final snapshot
# (up to --memsoak-agent-timeout), the retention search and the writers, with room to spare.
FINISH_WAIT_S = 600.0


class MemsoakPlugin:
    # Whether the gate follows a moved end (`end_at`): a plan may then add windows after its
    # series. A distributed master's quotas do not (yet).
    GATE_MOVES_END = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.agent = AgentClient(settings.agent_url, settings.agent_token, timeout=settings.agent_timeout)
        self.run_dir = RunDir(settings.out)
        self.environment: Environment | None = None
        self.report: Report | None = None
        # `memsoak run` renders machine-readable progress lines; plain Locust keeps its own output.
        self.progress = os.environ.get(PROGRESS_ENV) == "1"
        self.history = History(settings.history) if settings.history else None
        self._finishing: Event | None = None  # set once test_stop's reports are written
        self.session = self._new_session()
        self.plan: Plan = plan_for(self.session)
        self._printer: ProgressPrinter | None = None

    def _new_session(self) -> Session:
        return Session(
            self.settings,
            self.agent,
            self.run_dir,
            history=self.history,
            progress=self.progress,
            quit=self._quit,
            end_soak=self._end_soak,
            can_move_end=self.GATE_MOVES_END,
        )

    # What the web UI's Memory tab and users' scripts read (memsoak/locust/webui.py).

    @property
    def data(self) -> RunData:
        return self.session.data

    @property
    def store(self) -> SnapshotStore:
        return self.session.store

    @property
    def gate(self) -> Gate | None:
        return self.session.gate

    def latest_reading(self) -> Sample | Snapshot | None:
        return self.session.latest_reading()

    def latest_memory(self) -> tuple[int | None, int | None]:
        return self.session.latest_memory()

    def snapshots_for_analysis(self, thresholds: Thresholds) -> list[Snapshot]:
        return self.session.snapshots_for_analysis(thresholds)

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
        session = self.session = self._new_session()
        plan = self.plan = plan_for(session)
        session.data.parameters = self._parameters(environment)
        session.data.events.append(f"{time.strftime('%H:%M:%S')} test started")
        session.gate = self._make_gate(plan.boundaries(), self._on_boundary, plan.open_ended)
        if session.history is not None:
            session.history.start(plan.describe())
        if self.progress:
            self._printer = ProgressPrinter(session, self.environment)
            self._printer.start()

    def _on_boundary(self, total_completed: int) -> None:
        self.plan.on_boundary(total_completed - self.settings.warmup)

    def _make_gate(self, boundaries: list[int], on_boundary: Callable[[int], None], open_ended: bool) -> Gate:
        return RequestGate(boundaries, on_boundary, open_ended=open_ended)

    def _end_soak(self) -> None:
        self._quit()

    def _on_quitting(self, **_: Any) -> None:
        # Locust fires `quitting` before test_stop only when a signal (Ctrl-C, SIGTERM) ends it.
        if self.session.gate is not None:
            self.session.interrupted = True

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
        session = self.session
        if exception is None or session.gate is None:
            return
        if session.measuring_since is None:
            session.failed_warmup += 1
        elif not self.plan.window_request_failed():
            session.failed_measured += 1
        else:
            if self.plan.window_failing:
                gevent.spawn(self.plan.end_window_early)
            return
        failure = request_failure(request_type, name, response, exception)
        # The first distinct ones: a hundred copies of one 500 say no more than one.
        if len(session.data.failures) < QUOTED_FAILURES and failure not in session.data.failures:
            session.data.failures.append(failure)
        self._stop_if_failures_settle_it(session.gate.completed)

    def _stop_if_failures_settle_it(self, completed: int) -> None:
        session = self.session
        if session.stopped_for_failures:
            return
        why = failures_settle_it(
            failed_measured=session.failed_measured,
            failed_warmup=session.failed_warmup,
            completed=completed,
            planned_measured=self.plan.planned_measured(),
            max_failed_share=session.settings.thresholds.max_failed_share,
        )
        if why is not None:
            session.stopped_for_failures = True
            gevent.spawn(self._stop_for_failures, why)  # it asks the agent: never in a listener

    def _stop_for_failures(self, why: str) -> None:
        """Requests to a target that is gone fail too: then the target failed, which says more."""
        session = self.session
        try:
            session.agent.status()
        except AgentError as exc:
            session.fail_target(f"the agent stopped answering: {exc}")
            return
        session.event(f"stopping the load: {why}")
        session.quit()

    def _on_test_stop(self, environment: Environment, **_: Any) -> None:
        session = self.session
        gate = session.gate
        if gate is None:
            return
        gate.close()
        session.sampler.stop()
        if self._printer is not None:
            self._printer.stop()
        with session.snapshot_lock:  # a checkpoint in progress finishes first
            self.plan.stop()
        self.report, exit_code = finish(session, self.plan, gate.completed, self._load_stats(environment))
        if exit_code is not None:
            environment.process_exit_code = exit_code
        session.gate = None

    # -- quitting ----------------------------------------------------------------------------

    def _quit(self) -> None:
        session = self.session
        if session.gate is not None:
            session.gate.close()
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

    # -- what the report says about the run ----------------------------------------------------

    def _load_stats(self, environment: Environment) -> dict[str, object]:
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
            self.session.event(f"agent status failed at start: {exc}")
        return params
