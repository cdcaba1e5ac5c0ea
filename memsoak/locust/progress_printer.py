"""Machine-readable progress lines for `memsoak run` (memsoak/progress.py renders them), twice
a second while the test runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent
from locust.env import Environment

from memsoak.progress import progress_line

if TYPE_CHECKING:
    from memsoak.locust.state import RunState

PROGRESS_INTERVAL_S = 0.5


class ProgressPrinter:
    def __init__(self, session: RunState, environment: Environment | None) -> None:
        self._session = session
        self._environment = environment
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._forever)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _forever(self) -> None:
        session = self._session
        settings = session.settings
        while session.gate is not None:
            rss, traced = session.latest_memory()
            stats = self._environment.stats.total if self._environment else None
            print(
                progress_line(
                    completed=session.gate.completed,
                    warmup=settings.warmup,
                    requests=settings.requests,
                    rps=stats.current_rps if stats is not None else 0.0,
                    rss_bytes=rss,
                    traced_bytes=traced,
                ),
                flush=True,
            )
            gevent.sleep(PROGRESS_INTERVAL_S)
