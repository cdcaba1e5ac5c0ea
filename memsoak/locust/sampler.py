"""The RSS series: a cheap reading of the target's memory (no snapshot) every sample interval
while the measured requests run, and one just before each snapshot."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import gevent

from analysis.model import Sample
from memsoak.agent_client import AgentError, AgentTimeout

if TYPE_CHECKING:
    from memsoak.locust.state import RunState

MAX_SAMPLES = 2000
# RSS samples that fail in a row before the target counts as gone (a timeout counts at once: it
# has already waited the whole agent timeout).
MAX_SAMPLE_FAILURES = 3


class Sampler:
    def __init__(self, session: RunState) -> None:
        self._session = session
        self._interval = session.settings.sample_interval
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.stop()
        self._greenlet = gevent.spawn(self._forever)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _forever(self) -> None:
        session = self._session
        failures = 0
        while True:
            gevent.sleep(self._interval)
            if session.gate is None or session.measuring_since is None:
                return
            if session.snapshotting:
                continue
            try:
                self.sample(session.measured_now())
            except AgentError as exc:
                if session.snapshotting:  # a snapshot started meanwhile and held the agent up
                    continue
                failures += 1
                if isinstance(exc, AgentTimeout) or failures >= MAX_SAMPLE_FAILURES:
                    session.fail_target(f"the agent stopped answering: {exc}")
                    return
                session.event(f"RSS sample failed: {exc}")
                continue
            failures = 0

    def sample(self, measured: int) -> None:
        """One RSS reading; AgentError when the agent does not answer."""
        session = self._session
        if session.measuring_since is None:
            return
        status = session.agent.status()
        samples = session.data.samples
        samples.append(
            Sample(
                requests=measured,
                elapsed_s=time.monotonic() - session.measuring_since,
                rss_bytes=status["rss_bytes"],
                traced_bytes=status["traced_bytes"],
            )
        )
        if len(samples) > MAX_SAMPLES:
            # Keep the series bounded however long the run: halve its resolution.
            samples[:] = samples[::2]
            self._interval *= 2
