"""A Locust process that `memsoak run` started stops soon after `memsoak run` ends, however it
ended (SIGKILL and the OOM killer included).

The kernel sends it SIGTERM as its parent dies (memsoak/lifeline.py), which Locust takes for a
stop: its users stop at once and the plugin writes its partial reports. What this adds, in that
Locust process:
- Whatever it says from then on goes to the run's locust.log (the conductor copied its output
  there, and nobody reads the pipe now), beginning with why it stops.
- It asks the agent for nothing more (no final snapshot, no retention search): the run ends at
  its last snapshot, and its reports are written from what is in hand.
- It is gone within `DEADLINE_S` whatever it was doing then (a checkpoint waiting on a hung
  target, a user's slow test_stop listener): SIGALRM left to its default action ends it with
  none of its own code having to run.
- Where no signal comes (not Linux, or the conductor died before the child could ask for one),
  it notices by itself: a process's parent pid changes when its parent dies. Checked every
  `POLL_S`, in a greenlet; then it stops as the signal would have stopped it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import gevent
from locust.env import Environment

from memsoak import lifeline
from memsoak.locust.plugin import MemsoakPlugin

POLL_S = 0.2
DEADLINE_S = 3


class ConductorWatch:
    def __init__(self, conductor_pid: int, log_path: str | None) -> None:
        self.conductor_pid = conductor_pid
        self.log_path = log_path
        self.noticed = False
        self.environment: Environment | None = None

    @classmethod
    def from_environment(cls) -> ConductorWatch | None:
        """The watch for a process `memsoak run` started; None for a Locust started otherwise."""
        pid = os.environ.get(lifeline.ENV_PID, "")
        if not pid.isdigit():
            return None
        return cls(int(pid), os.environ.get(lifeline.ENV_LOG) or None)

    def register(self, environment: Environment) -> None:
        self.environment = environment
        environment.events.quitting.add_listener(self._on_quitting)
        gevent.spawn(self._watch)

    def gone(self) -> bool:
        return os.getppid() != self.conductor_pid

    def _watch(self) -> None:
        while not self.gone():
            gevent.sleep(POLL_S)
        if not self.noticed:
            self._notice()
            os.kill(os.getpid(), signal.SIGTERM)  # Locust's own way to stop, as the kernel's

    def _on_quitting(self, **_: Any) -> None:
        # Locust fires `quitting` first thing as it stops: before the users stop, before the
        # plugin's test_stop prints its summary to a pipe nobody reads.
        if self.gone() and not self.noticed:
            self._notice()

    def _notice(self) -> None:
        self.noticed = True
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(DEADLINE_S)
        if self.log_path is not None:
            try:
                fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError:
                fd = os.open(os.devnull, os.O_WRONLY)  # still better than a broken pipe
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        gone = f"the memsoak run that started this Locust (pid {self.conductor_pid}) is gone"
        message = f"{gone}: stopping the load; this process ends within {DEADLINE_S} s"
        plugin = getattr(self.environment, "memsoak", None)
        if not isinstance(plugin, MemsoakPlugin):  # a worker, or a master not yet registered
            print(f"memsoak: {message}", file=sys.stderr, flush=True)
            return
        if plugin.progress:
            plugin.session.event(message)  # printed, and among the report's events
        else:
            print(f"memsoak: {message}", file=sys.stderr, flush=True)
        # The run ends at its last snapshot, its reports written from what is in hand: a final
        # snapshot or a retention search could outlast the deadline (a live --host target) and
        # nobody waits for them now.
        plugin.agent.close(gone)
