"""The native window: after a native-leak verdict, record `--native-window` more requests with
memray in the target (memsoak/agent/native.py) and keep what they left allocated, grouped by
hybrid stack; analysis/native.py names the sites in the report."""

from __future__ import annotations

from analysis.native import read_native
from analysis.report import Report
from memsoak.agent_client import AgentError, AgentTimeout, AgentUnreachable
from memsoak.locust.plans.window import Window
from memsoak.locust.session import Session

# memray's tracker stops by itself after this, should nobody close the window.
NATIVE_WINDOW_MAX_S = 300.0


def native_wanted(report: Report) -> bool:
    """A native-leak verdict, or a top suspect whose retention is `raw` (a buffer C code took
    from Python's allocators and never freed: a kind the retention search tells once it does;
    before that search has run, as at the end of a series, no suspect has one)."""
    if report.verdict.kind == "native-leak":
        return True
    return any(getattr(s.retention, "kind", None) == "raw" for s in report.suspects[:3])


class NativeWindow(Window):
    name = "recorded with memray (the native window)"

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.requests = session.settings.native_window

    def open(self, report: Report) -> str | None:
        if self.requests <= 0 or not native_wanted(report):
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
