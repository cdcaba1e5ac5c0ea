"""The native window: after a native-leak verdict, record `--native-window` more requests with
memray in the target (memsoak/agent/native.py) and keep what they left allocated, grouped by
hybrid stack; analysis/native.py names the sites in the report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis.native import read_native
from analysis.report import Report
from analysis.retention import read_retentions, site_key
from memsoak.agent_client import AgentError, AgentTimeout, AgentUnreachable
from memsoak.locust.plans.window import Window
from memsoak.locust.session import Session

# memray's tracker stops by itself after this, should nobody close the window.
NATIVE_WINDOW_MAX_S = 300.0


def native_wanted(report: Report, retention: Sequence[dict[str, Any]] | None) -> bool:
    """A native-leak verdict, or a top suspect whose retention is `raw` (a buffer C code took
    from Python's allocators and never freed), as the early retention search found it. The top
    one only: `raw` is told by absence, and a smaller suspect's str kept as a dict key (which the
    collector does not track) reads as raw too (a Django leak's second suspect, in urllib)."""
    if report.verdict.kind == "native-leak":
        return True
    if report.verdict.kind != "leak" or not retention or not report.suspects:
        return False
    top = read_retentions(retention).get(site_key(report.suspects[0].traceback))
    return top is not None and top.kind == "raw"


class NativeWindow(Window):
    name = "recorded with memray (the native window)"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.requests = session.settings.native_window

    def open(self, report: Report) -> str | None:
        if self.requests <= 0:
            return None
        # The search runs in a forked child; waiting for it holds the load at the window's start
        # (test stop would wait for it anyway).
        if not native_wanted(report, self.session.retention.early_answer()):
            return None
        try:
            self.session.agent.start_native(NATIVE_WINDOW_MAX_S)
        except AgentError as exc:
            self.session.event(f"native window not recorded: {exc}")
            return None
        return f"{report.verdict.kind}: recording {self.requests} more requests with memray (native window)"

    def close(self, seen: int) -> None:
        session = self.session
        try:
            session.data.native = session.agent.stop_native()
        except (AgentUnreachable, AgentTimeout) as exc:
            session.fail_target(f"native window lost: {exc}")
            return
        except AgentError as exc:
            session.event(f"native window lost: {exc}")
            return
        window = read_native(session.data.native)
        if window is not None:
            session.event(
                f"native window: {window.requests} requests, {len(window.sites)} native site(s) "
                f"above the floor, {window.leaked_bytes:,} bytes left allocated in all"
                + (f" ({window.note})" if window.note else "")
            )
