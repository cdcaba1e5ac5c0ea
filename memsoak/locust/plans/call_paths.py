"""The call-path window: after a series traced one frame deep, watch the call paths that reach
the suspects' lines, as deep as the target's depth, for CALL_PATH_WINDOW requests
(memsoak/agent/callers.py); analysis/call_paths.py deepens the suspects' tracebacks with them."""

from __future__ import annotations

from analysis.call_paths import read_call_paths
from analysis.report import Report
from analysis.sequential import CALL_PATH_WINDOW
from memsoak.agent_client import AgentError
from memsoak.locust.plans.window import Window
from memsoak.protocol import MAX_CALLER_LINES

# The agent stops watching call paths by itself after this, should nobody ask for them.
PATHS_WATCH_MAX_S = 120.0


class CallPathWindow(Window):
    requests = CALL_PATH_WINDOW
    name = "watching the call paths"

    def open(self, report: Report) -> str | None:
        if not report.suspects:
            return None
        lines = list(dict.fromkeys((s.file, s.line) for s in report.suspects))[:MAX_CALLER_LINES]
        try:
            self.session.agent.watch_callers(lines, self.depth, PATHS_WATCH_MAX_S)
        except AgentError as exc:
            self.session.event(f"call paths not watched, tracebacks stay one frame deep: {exc}")
            return None
        return f"watching the call paths to {len(lines)} suspect line(s) for {self.requests} requests"

    def close(self, seen: int) -> None:
        session = self.session
        try:
            session.data.call_paths = session.agent.callers()
        except AgentError as exc:
            session.event(f"call paths not gathered, tracebacks stay one frame deep: {exc}")
        else:
            reached = len(read_call_paths(session.data.call_paths))
            self.took = f"the paths to {reached} suspect line{'s' if reached != 1 else ''}"
            session.event(f"call paths: {reached} suspect line(s) reached in {seen} requests")
