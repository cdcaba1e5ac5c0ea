"""The kept-paths window: when a suspect's line is reached by several call paths (a helper two
routes share), the most called is not necessarily the one keeping the memory. For
KEPT_PATH_WINDOW requests tracemalloc traces as deep as the paths, and a snapshot at the end holds
only what those requests left alive: the path whose allocations are still there is the one
shown (analysis/call_paths.py `weigh_kept`).

Restarting tracemalloc deeper drops the series' traces, so it opens only once the retention
search, which needs them, has them in its forked child (it waits for the search to end), and
only after the series' last snapshot. A target that outlives the run is left untraced anyway
(`Session.restore_tracing`).
"""

from __future__ import annotations

from analysis.call_paths import several_paths, weigh_kept
from analysis.report import Report
from analysis.snapshot_io import snapshot_from_dict
from memsoak.agent_client import AgentError
from memsoak.locust.plans.window import Window
from memsoak.locust.session import MIN_SITE_BYTES

KEPT_PATH_WINDOW = 100


class KeptPathWindow(Window):
    requests = KEPT_PATH_WINDOW
    name = "telling the call paths apart"
    optional = True

    def open(self, report: Report) -> str | None:
        session = self.session
        lines = several_paths(session.data.call_paths)
        if not lines:
            return None
        session.retention.wait_early()
        try:
            session.agent.set_tracing(True, self.depth)
        except AgentError as exc:
            session.event(f"call paths not told apart, the most called is shown: {exc}")
            return None
        session.retention.traces_replaced = True
        return (
            f"{len(lines)} suspect line(s) reached by several call paths: tracing {self.depth} frames "
            f"deep for {self.requests} requests, to see which path keeps the memory"
        )

    def close(self, seen: int) -> None:
        session = self.session
        try:
            snapshot = snapshot_from_dict(session.agent.snapshot(MIN_SITE_BYTES))
        except (AgentError, ValueError) as exc:
            session.event(f"call paths not told apart, the most called is shown: {exc}")
            return
        session.data.call_paths = weigh_kept(session.data.call_paths, snapshot.sites)
        lines = several_paths(session.data.call_paths)
        self.took = (
            f"which of the paths to {len(lines)} line{'s' if len(lines) != 1 else ''} keeps the memory"
        )
        session.event(
            f"call paths told apart by what {seen} requests traced {self.depth} frames deep left alive"
        )
