"""No process of a run outlives `memsoak run`, however it ends. `memsoak run` alone is killed
outright (SIGKILL: no handler, no `finally`), mid-run, in each way it can run; within 5 s nothing
it started is left, and the run directory still renders.

A run's processes are found by the run's own marks, never by a name: the working directory it
was started in (which every process it starts inherits), its --out directory in a command line or
an environment, the ports its processes listen on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from memsoak.agent_client import AgentClient
from memsoak.target import TargetProcess
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

GONE_WITHIN_S = 5.0  # the bound: poll for the state until then
START_BOUND_S = 180.0  # a run that never reaches its first checkpoint fails the test, not the suite
SLOW = "targets.faults.slow_leak:app"  # 10 ms a request: a run with a middle to be killed in
GONE_LINE = "is gone: stopping the load"


@dataclass
class Marks:
    cwd: str
    out: str
    ports: set[int] = field(default_factory=set)

    def bear(self, process: psutil.Process) -> bool:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            if os.path.realpath(process.cwd()) == self.cwd:
                return True
            if any(self.out in arg for arg in process.cmdline()):
                return True
            if any(self.out in value for value in process.environ().values()):
                return True
            return any(
                (c.laddr and c.laddr.port in self.ports) or (c.raddr and c.raddr.port in self.ports)
                for c in process.net_connections("inet")
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def processes(self) -> list[psutil.Process]:
        return [p for p in psutil.process_iter() if p.pid != os.getpid() and self.bear(p)]

    def learn_ports(self, processes: list[psutil.Process]) -> None:
        for process in processes:
            try:
                self.ports |= {
                    c.laddr.port for c in process.net_connections("inet") if c.status == psutil.CONN_LISTEN
                }
            except psutil.NoSuchProcess:
                pass


def wait_until(what: Callable[[], bool], bound_s: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + bound_s
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(why())
        time.sleep(0.05)


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_all(processes: list[psutil.Process]) -> None:
    """Only after a failure: what the test started and should have ended by itself."""
    for process in processes:
        if alive(process):
            process.kill()


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        try:
            lines.append(f"{process.pid} {' '.join(process.cmdline())[:200]}")
        except psutil.NoSuchProcess:
            pass
    return "; ".join(lines)


class Conducted:
    """`memsoak run` in a working directory of its own, killed at the test's word."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.cwd = tmp_path / "run-cwd"
        self.cwd.mkdir()
        self.out = self.cwd / "out"
        self.marks = Marks(cwd=os.path.realpath(self.cwd), out=str(self.out))
        self.stderr_path = tmp_path / "stderr.txt"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "memsoak", "run", "--out", str(self.out), *args],
                cwd=self.cwd,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )

    def checkpoints(self) -> int:
        if self.process.poll() is not None:
            raise AssertionError(
                f"memsoak ended early ({self.process.returncode}): {self.stderr_path.read_text()}"
            )
        return len(list((self.out / "snapshots").glob("*-checkpoint.json")))

    def kill_mid_run(self, expected: int, before: Callable[[], object] = lambda: None) -> None:
        """At its first checkpoint, SIGKILL to `memsoak run` alone, right after `before()`.
        `expected`: how many processes the run is made of (`memsoak run` included)."""
        wait_until(lambda: self.checkpoints() >= 1, START_BOUND_S, lambda: "no checkpoint came")
        conductor = psutil.Process(self.process.pid)
        family = [conductor, *conductor.children(recursive=True)]
        self.marks.learn_ports(family)
        found = self.marks.processes()
        # The marks find every process of the run (a forked snapshot child may have ended
        # meanwhile): the test cannot pass by seeing none of them.
        missed = [p for p in family if p.pid not in {f.pid for f in found} and alive(p)]
        assert not missed, describe(missed)
        assert len(found) >= expected, describe(found)
        before()
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def assert_nothing_left(self) -> None:
        wait_until(
            lambda: not self.marks.processes(),
            GONE_WITHIN_S,
            lambda: f"left after {GONE_WITHIN_S:g} s: {describe(self.marks.processes())}",
        )

    def assert_renders(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "memsoak", "report", str(self.out)],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "verdict" in result.stdout

    def cleanup(self) -> None:
        kill_all(self.marks.processes())


@pytest.fixture
def conduct(tmp_path: Path) -> Iterator[Callable[..., Conducted]]:
    runs: list[Conducted] = []

    def start(*args: str) -> Conducted:
        runs.append(Conducted(tmp_path, *args))
        return runs[-1]

    yield start
    for run in runs:
        run.cleanup()


BUDGET = ("--requests", "2000", "--warmup", "50", "--checkpoints", "4", "--users", "5", "--frames", "2")
MODES = {
    # mode: (arguments, processes of the run: memsoak run, Locust's, the target's)
    "plain": ((*BUDGET,), 3),
    "locust-workers": ((*BUDGET, "--workers", "2", "--spawn-rate", "100"), 5),
    "gunicorn": ((*BUDGET, "--server", "gunicorn", "--server-workers", "2"), 5),
    "soak": (("--duration", "120s", "--checkpoint-every", "1s", "--users", "5", "--warmup", "50"), 3),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_memsoak_run_killed_outright_leaves_no_process(conduct: Callable[..., Conducted], mode: str) -> None:
    arguments, expected = MODES[mode]
    run = conduct("--app", SLOW, *arguments)
    run.kill_mid_run(expected)
    run.assert_nothing_left()
    # The Locust master said why it stopped, in the log nobody else was writing any more, and so
    # did each Locust worker in its own.
    assert GONE_LINE in (run.out / "locust.log").read_text()
    for log in run.out.glob("locust-worker-*.log"):
        assert GONE_LINE in log.read_text(), log.name
    assert len(list(run.out.glob("locust-worker-*.log"))) == (2 if mode == "locust-workers" else 0)
    run.assert_renders()
    report = json.loads((run.out / "report.json").read_text())
    assert any("stopped after" in event for event in report["events"]), "killed mid-run"


def _serve_by_hand(tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """`memsoak serve` started by a user, in a directory of its own (none of a run's marks)."""
    home = tmp_path / "serve-cwd"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MEMSOAK_TOKEN"}
    with open(home / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "memsoak", "serve", SLOW, "--app-dir", str(REPO), "--frames", "2"],
            stdout=subprocess.PIPE, stderr=log, env={**env, "PYTHONPATH": str(REPO)}, cwd=home,
        )  # fmt: skip
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def test_a_run_against_a_served_target_leaves_the_target_alone(
    conduct: Callable[..., Conducted], tmp_path: Path
) -> None:
    """--host: Locust is the only process the run starts; it ends with the run, and the target,
    started by hand, is the user's and keeps serving."""
    server, ready = _serve_by_hand(tmp_path)
    try:
        run = conduct("--host", ready["url"], "--agent-token", ready["token"], *BUDGET)
        run.kill_mid_run(expected=2)
        run.assert_nothing_left()
        assert GONE_LINE in (run.out / "locust.log").read_text()
        run.assert_renders()
        assert server.poll() is None
        assert AgentClient(ready["url"], ready["token"], timeout=10).status()["requests_served"] > 0
    finally:
        server.terminate()
        server.wait(30)
        assert server.stdout is not None
        server.stdout.close()


def test_locust_is_out_in_time_even_waiting_on_a_hung_target(
    conduct: Callable[..., Conducted], tmp_path: Path
) -> None:
    """A target that stops answering (SIGSTOP) as the run is killed: a final snapshot would wait
    the whole agent timeout for it. Locust asks for none, and its deadline ends it all the same
    should it be waiting for one already (a checkpoint's)."""
    server, ready = _serve_by_hand(tmp_path)
    try:
        run = conduct("--host", ready["url"], "--agent-token", ready["token"], *BUDGET)
        run.kill_mid_run(expected=2, before=lambda: server.send_signal(signal.SIGSTOP))
        run.assert_nothing_left()
        assert GONE_LINE in (run.out / "locust.log").read_text()
        run.assert_renders()
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        server.wait(30)
        assert server.stdout is not None
        server.stdout.close()


STUCK_LOCUSTFILE = """
import os

from locust import events, task

from memsoak.locust import MemsoakHttpUser

never_written, _ = os.pipe()


@events.test_stop.add_listener
def never_done(**_):
    os.read(never_written, 1)  # a call outside gevent's reach: the whole process waits on it


class SeedUser(MemsoakHttpUser):
    @task
    def index(self):
        self.client.get("/")
"""


def test_locust_is_out_by_its_deadline_whatever_holds_it_up(
    conduct: Callable[..., Conducted], tmp_path: Path
) -> None:
    """Locust stops by running its test_stop listeners, and a locustfile's own can block the
    whole process for ever: its deadline ends it, and the run directory renders as of its last
    checkpoint."""
    locustfile = tmp_path / "stuck.py"
    locustfile.write_text(STUCK_LOCUSTFILE)
    run = conduct("--app", SLOW, "--locustfile", str(locustfile), *BUDGET)
    run.kill_mid_run(expected=3)
    run.assert_nothing_left()
    assert GONE_LINE in (run.out / "locust.log").read_text()
    run.assert_renders()
    assert json.loads((run.out / "run.json").read_text())["status"] == "running"  # as last saved


# A conductor that starts Locust as `memsoak run` does but asks the kernel for nothing: the Locust
# process has to notice by itself that it is gone (as on a platform without PR_SET_PDEATHSIG).
SHIM = """
import os, subprocess, sys
log_path = sys.argv[1]
env = {**os.environ, "MEMSOAK_CONDUCTOR_PID": str(os.getpid()), "MEMSOAK_CONDUCTOR_LOG": log_path}
locust = subprocess.Popen(sys.argv[2:], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
with open(log_path, "wb", buffering=0) as log:
    for line in locust.stdout:
        log.write(line)
"""


def test_locust_notices_by_itself_that_its_conductor_is_gone(
    start_target: Callable[..., TargetProcess], token: str, tmp_path: Path
) -> None:
    target = start_target(SLOW, app_dir=str(REPO))
    out = tmp_path / "out"
    log = out / "locust.log"
    out.mkdir()
    locust = [
        sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "seed.py"), "--headless",
        "--only-summary", "-u", "5", "-r", "100", "--host", target.url, "-t", "600s",
        "--memsoak-requests", "2000", "--memsoak-warmup", "50", "--memsoak-checkpoints", "4",
        "--memsoak-out", str(out), "--memsoak-agent-token", token,
    ]  # fmt: skip
    children: list[psutil.Process] = []
    shim = subprocess.Popen(
        [sys.executable, "-c", SHIM, str(log), *locust],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_until(
            lambda: any((out / "snapshots").glob("*-checkpoint.json")),
            START_BOUND_S,
            lambda: log.read_text() if log.exists() else "Locust said nothing",
        )
        children = psutil.Process(shim.pid).children()
        assert len(children) == 1
        shim.kill()
        shim.wait()
        wait_until(
            lambda: not alive(children[0]),
            GONE_WITHIN_S,
            lambda: f"Locust still running: {log.read_text()[-2000:]}",
        )
    finally:
        shim.kill()
        shim.wait()
        kill_all(children)
    text = log.read_text()
    assert GONE_LINE in text
    assert "memsoak-summary" in text or "verdict" in text, text[-2000:]  # the partial reports: said there


def test_a_locust_started_by_hand_stops_when_its_target_is_gone(
    start_target: Callable[..., TargetProcess], token: str, tmp_path: Path
) -> None:
    """No conductor to watch: a plain `locust` with the plugin, in a soak (no request count to
    run out), whose target dies. Its sampler finds the agent gone, the load stops, and the log
    says why."""
    target = start_target(SLOW, app_dir=str(REPO))
    out = tmp_path / "out"
    log = tmp_path / "locust.log"
    command = [
        sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "seed.py"), "--headless",
        "-u", "5", "-r", "100", "--host", target.url, "-t", "600s", "--memsoak-out", str(out),
        "--memsoak-duration", "300s", "--memsoak-checkpoint-every", "100s", "--memsoak-warmup", "50",
        "--memsoak-sample-interval", "0.5", "--memsoak-agent-token", token,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("MEMSOAK_CONDUCTOR_PID", "MEMSOAK_CONDUCTOR_LOG")}
    with open(log, "wb") as file:
        locust = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=file, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: any((out / "snapshots").glob("*-baseline.json")) or locust.poll() is not None,
            START_BOUND_S,
            lambda: log.read_text(),
        )
        os.kill(target.pid, signal.SIGKILL)
        # Three failed samples half a second apart, then the partial reports.
        wait_until(lambda: locust.poll() is not None, GONE_WITHIN_S, lambda: log.read_text()[-2000:])
    finally:
        locust.kill()
        locust.wait()
    text = log.read_text()
    assert locust.returncode == 3, text[-2000:]
    assert "the agent stopped answering" in text
