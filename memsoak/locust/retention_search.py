"""The retention search: ask the agent what keeps the leak suspects alive (memsoak/agent/
retention.py). At test stop, or, when a window follows the series, early: in a forked child of
the target while the window's requests run, its answer taken at test stop if it is about the
same suspects."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gevent

from analysis.model import Suspect, Traceback
from analysis.report import Report
from analysis.writers import preload as preload_writers
from memsoak.agent_client import AgentError

if TYPE_CHECKING:
    from memsoak.locust.state import RunState

RETENTION_SUSPECTS = 10  # one root may keep many sites: the search groups what it is asked about


def retention_suspects(report: Report) -> list[Suspect]:
    """The suspects a retention search asks about: the steadily growing ones, first few."""
    return [s for s in report.suspects if s.steady][:RETENTION_SUSPECTS]


class RetentionSearch:
    def __init__(self, session: RunState) -> None:
        self._session = session
        self._early: gevent.Greenlet | None = None
        self._early_for: tuple[Traceback, ...] = ()
        # Set once a window restarted tracing: the target's traces are no longer the series', so
        # no search can be made after that; only the early one's answer counts.
        self.traces_replaced = False

    def wanted(self, report: Report) -> bool:
        session = self._session
        return (
            report.verdict.kind == "leak"
            and bool(retention_suspects(report))
            and not session.target_failed
            and session.settings.retention_seconds > 0
        )

    def start_early(self, report: Report) -> None:
        """Search now, in a child of the target, while the load goes on: for a window whose
        requests change nothing the search looks at (the suspects, their tracebacks as traced)."""
        if self.wanted(report):
            self._early = gevent.spawn(self.find, report, True)
            self._early_for = tuple(s.traceback for s in retention_suspects(report))

    def wait_early(self) -> None:
        """Until the early search (if any) has its answer: the target's traces may change after."""
        if self._early is not None:
            self._early.join()

    def early_answer(self) -> list[dict[str, Any]] | None:
        """The early search's answer, waited for (None when none was started or it failed); it
        is still the one `answer_for` gives."""
        if self._early is None:
            return None
        answer: list[dict[str, Any]] | None = self._early.get()
        return answer

    def answer_for(self, report: Report) -> list[dict[str, Any]] | None:
        """The retention paths of `report`'s suspects: those of the early search, if it was about
        them (a run cut short may have others), else from a search now."""
        early, self._early = self._early, None
        wanted = self.wanted(report)
        asked_for = tuple(s.traceback for s in retention_suspects(report))
        if early is not None and wanted and self._early_for == asked_for:
            answer: list[dict[str, Any]] | None = early.get()
            return answer
        if early is not None:
            early.kill(block=False)
        if wanted and self.traces_replaced:
            self._session.event("retention search not made: a window replaced the traces it needs")
            return None
        return self.find(report) if wanted else None

    def find(self, report: Report, in_window: bool = False) -> list[dict[str, Any]] | None:
        """Ask the agent what keeps the leak suspects alive (bounded by --memsoak-retention-seconds);
        `in_window`: during a window, in a forked child of the target (the load goes on
        meanwhile). `report`'s suspects must have their tracebacks as traced (not deepened by
        call paths): the agent compares them with its traces. None when not asked or failed: a
        failure costs the paths, never the run."""
        if not self.wanted(report):
            return None
        session = self._session
        leaking = retention_suspects(report)
        live = {s.traceback: s.growth[-1] for s in leaking}
        started = time.monotonic()
        # The reports' imports run while the target searches (they are the Locust side's CPU,
        # the search the target's), not after it. Only here, where this greenlet waits on the
        # agent anyway: a yield anywhere else in test_stop lets a master whose last worker is
        # gone quit before the reports are written.
        preloading = gevent.spawn(preload_writers, session.settings.formats or None)
        try:
            answer = session.agent.retention(
                [
                    {"traceback": [[f.file, f.line] for f in tb], "live_bytes": size}
                    for tb, size in live.items()
                ],
                max_seconds=session.settings.retention_seconds,
                fork=in_window,
            )
        except AgentError as exc:
            session.event(f"retention search failed: {exc}")
            return None
        finally:
            preloading.join()
        found = answer.get("suspects")
        if not isinstance(found, list):
            return None
        docs = [doc for doc in found if isinstance(doc, dict)]
        session.event(
            f"retention search: {sum(1 for d in docs if d.get('found') is True)} of {len(leaking)} "
            f"suspect(s) traced to a root in {time.monotonic() - started:.1f} s"
            + (" (in a forked child, while the windows after the series ran)" if in_window else "")
        )
        return docs
