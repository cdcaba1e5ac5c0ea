"""Faults in the middle of a run: the target killed (SIGKILL, out of memory), an agent that stops
answering, Ctrl-C, an output directory that cannot be written. Each ends by itself, within a
bound, with exit 3 (or 130 for Ctrl-C, 2 for bad output) and a report of what was gathered.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from memsoak.agent_client import AgentClient
from tests.conftest import default_sigint

REPO = Path(__file__).resolve().parent.parent
RUN_BOUND_S = 240  # no run here takes near this; a hang fails the test instead of the suite


def expected_verdict(module: str) -> str:
    doc = (REPO / (module.replace(".", "/") + ".py")).read_text()
    match = re.search(r"^Expected verdict: (\S+)$", doc, re.MULTILINE)
    assert match, module
    return match.group(1)


def planted_line(module: str) -> tuple[str, int]:
    doc = (REPO / (module.replace(".", "/") + ".py")).read_text()
    match = re.search(r"^Planted line: (\S+):(\d+)$", doc, re.MULTILINE)
    assert match, module
    return match.group(1), int(match.group(2))


class Run:
    """`memsoak run` in the background, in its own process group (as a terminal would run it)."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.out = tmp_path / "out"
        self.stdout_path = tmp_path / "stdout.txt"
        self.stderr_path = tmp_path / "stderr.txt"
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "memsoak", "run", "--out", str(self.out), *args],
                cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=default_sigint,
            )

    def wait_for(self, what: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if self.process.poll() is not None:
                raise AssertionError(f"memsoak ended early ({self.process.returncode}): {self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the run")
            time.sleep(0.1)

    def checkpoints_taken(self) -> int:
        return len(list((self.out / "snapshots").glob("[0-9][0-9][0-9]-checkpoint.json")))

    def target_pid(self) -> int:
        return int(json.loads((self.out / "run.json").read_text())["parameters"]["target_pid"])

    def finish(self) -> int:
        try:
            return self.process.wait(RUN_BOUND_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"memsoak did not end by itself within {RUN_BOUND_S} s") from None

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def report(self) -> dict[str, Any]:
        return json.loads((self.out / "report.json").read_text())

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    started: list[Run] = []
    pids: list[int] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Run:
        run = Run(tmp_path, *args, env=env)
        started.append(run)
        return run

    yield start
    for run in started:
        try:
            pids.append(run.target_pid())
        except (OSError, ValueError, KeyError):
            pass
        run.kill()
    for pid in pids:  # a target left behind by a failed test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def assert_no_partial_files(out: Path) -> None:
    leftovers = [p.name for p in out.rglob(".*.tmp")]
    assert leftovers == [], leftovers


def assert_partial_report(run: Run, module: str, bytes_per_request: int) -> dict[str, Any]:
    """The report of a run that ended early: samples up to then and the suspects of the
    snapshots taken before it ended, with per-request figures over the requests they measured."""
    report = run.report()
    file, line = planted_line(module)
    assert report["verdict"] == expected_verdict(module)
    assert report["suspects"], report["events"]
    top = report["suspects"][0]
    assert (Path(top["file"]).name, top["line"]) == (file, line)
    assert bytes_per_request <= top["bytes_per_request"] < 1.2 * bytes_per_request
    assert len(report["checkpoints"]) >= 2
    assert report["samples"], "the RSS samples up to the failure are in the report"
    counts = [s["requests"] for s in report["samples"]]
    assert counts == sorted(counts)
    # The markdown report says the same, and nothing is half-written.
    markdown = (run.out / "report.md").read_text()
    assert "## Events" in markdown
    assert_no_partial_files(run.out)
    return report


SLOW = "targets.faults.slow_leak"
SLOW_RUN = (
    "--app",
    f"{SLOW}:app",
    "--requests",
    "2000",
    "--warmup",
    "50",
    "--checkpoints",
    "4",
    "--users",
    "5",
    "--frames",
    "2",
)


def test_target_killed_by_sigkill_halfway(runs: Callable[..., Run]) -> None:
    run = runs(*SLOW_RUN)
    run.wait_for(lambda: run.checkpoints_taken() >= 1)
    killed_at = time.time()
    os.kill(run.target_pid(), signal.SIGKILL)
    assert run.finish() == 3
    error = run.stderr().strip().splitlines()
    assert len(error) == 1 and "Traceback" not in run.stderr()
    assert error[0].startswith("memsoak: error: the target died during the run at ")
    assert "killed by signal 9 (SIGKILL)" in error[0] and "slow_leak: served" in error[0]

    report = assert_partial_report(run, SLOW, 8192)
    assert report["requests"]["measured"] < 2000
    events = "\n".join(report["events"])
    assert "the target process died at" in events and "killed by signal 9 (SIGKILL)" in events
    assert "target failed at" in events  # the plugin's own account, with the request count
    stderr_events = [e for e in report["events"] if "target stderr: " in e]
    assert stderr_events and all("slow_leak: served" in e for e in stderr_events)
    # "When": the time of death is the time of the kill, give or take the watcher's poll.
    died = re.search(r"died at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4})", events)
    assert died is not None
    died_at = time.mktime(time.strptime(died.group(1), "%Y-%m-%d %H:%M:%S %z"))
    assert abs(died_at - killed_at) < 5
    assert json.loads((run.out / "run.json").read_text())["status"] == "failed"


OOM = "targets.faults.oom_leak"


def test_target_dies_out_of_memory_halfway(runs: Callable[..., Run]) -> None:
    run = runs(
        "--app", f"{OOM}:app", "--requests", "3000", "--warmup", "20", "--checkpoints", "30",
        "--users", "4", "--frames", "2",
        env={"MEMSOAK_FAULT_HEADROOM_MB": "160"},
    )  # fmt: skip
    assert run.finish() == 3
    error = run.stderr().strip().splitlines()
    assert len(error) == 1, run.stderr()
    assert "killed by signal 9 (SIGKILL)" in error[0] and "MemoryError" in error[0]
    report = assert_partial_report(run, OOM, 256 * 1024)
    assert 0 < report["requests"]["measured"] < 3000
    assert any("RLIMIT_AS" in e for e in report["events"])


def test_agent_that_stops_answering_times_out(runs: Callable[..., Run]) -> None:
    run = runs(*SLOW_RUN, "--agent-timeout", "10")
    run.wait_for(lambda: run.checkpoints_taken() >= 1)
    pid = run.target_pid()
    os.kill(pid, signal.SIGSTOP)  # alive, listening, silent: a hung target
    try:
        assert run.finish() == 3
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    report = assert_partial_report(run, SLOW, 8192)
    failure = [e for e in report["events"] if "target failed at" in e]
    assert failure and "did not answer" in failure[0] and "within 10 s" in failure[0]
    assert "target failed at" in run.stdout()
    error = run.stderr().strip().splitlines()
    assert len(error) == 1 and error[0].startswith("memsoak: error: target failed at ")
    assert "the agent stopped answering" in error[0] and "partial reports in" in error[0]
    # memsoak stopped the target it started, hung or not.
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_ctrl_c_writes_a_report_of_what_was_gathered(runs: Callable[..., Run]) -> None:
    run = runs(*SLOW_RUN)
    run.wait_for(lambda: run.checkpoints_taken() >= 1)
    pid = run.target_pid()
    os.killpg(run.process.pid, signal.SIGINT)  # what Ctrl-C at a terminal does
    assert run.finish() == 130
    assert "interrupted: reports of what was gathered are in" in run.stdout()
    assert "Traceback" not in run.stderr() + run.stdout()
    report = run.report()
    assert 0 < report["requests"]["measured"] < 2000
    # The target was still there for a final snapshot: baseline, the checkpoint(s), final.
    assert len(report["checkpoints"]) >= 3
    assert report["checkpoints"][-1]["requests"] == report["requests"]["measured"]
    assert any("stopped after" in e for e in report["events"])
    assert report["suspects"] and Path(report["suspects"][0]["file"]).name == "slow_leak.py"
    assert_no_partial_files(run.out)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_unwritable_output_fails_before_any_load(
    start_target: Any, token: str, tmp_path: Path, memsoak: Any
) -> None:
    target = start_target("targets.faults.slow_leak:app")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the output directory's parent should be")
    result = memsoak(
        "run", "--host", target.url, "--agent-token", token, "--requests", "300",
        "--out", str(blocker / "out"), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"memsoak: error: cannot write to output directory {blocker / 'out'}: Not a directory"
    ]
    assert AgentClient(target.url, token).status()["requests_served"] == 0


def test_unwritable_output_fails_before_any_load_in_plain_locust(
    start_target: Any, token: str, tmp_path: Path
) -> None:
    target = start_target("targets.faults.slow_leak:app")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(REPO / "locustfiles" / "seed.py"),
            "--headless",
            "-u",
            "2",
            "-r",
            "2",
            "--host",
            target.url,
            "-t",
            "60s",
            "--memsoak-requests",
            "300",
            "--memsoak-out",
            str(blocker / "out"),
        ],
        env={**os.environ, "MEMSOAK_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "memsoak: error: cannot write to output directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert AgentClient(target.url, token).status()["requests_served"] == 0


# -- nothing lost ----------------------------------------------------------------------------

WRITER = r"""
import json, sys
from pathlib import Path
from memsoak.atomic import atomic_text
path = Path(sys.argv[1])
blob = "x" * 200_000
n = 0
while True:
    n += 1
    with atomic_text(path) as file:
        file.write('{"n": %d, "parts": [' % n)
        for i in range(20):
            file.write(json.dumps(blob) + ",")
        file.write('"end"]}')
"""


def test_atomic_writes_survive_sigkill_at_any_moment(tmp_path: Path) -> None:
    """A writer killed mid-write leaves the last complete file, never half of one."""
    path = tmp_path / "report.json"
    seen = set()
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55, 0.89):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO)
        time.sleep(delay + 0.3)  # past interpreter start-up, then somewhere mid-loop
        writer.kill()
        writer.wait(30)
        if path.exists():
            doc = json.loads(path.read_text())
            assert doc["parts"][-1] == "end" and len(doc["parts"]) == 21
            seen.add(doc["n"])
    assert seen, "the writer never finished one file: the test proved nothing"


def test_a_failed_render_keeps_the_previous_file(tmp_path: Path) -> None:
    from memsoak.atomic import write_atomic

    path = tmp_path / "report.md"
    path.write_text("previous, complete")

    def render(file: Any) -> None:
        file.write("half of the new one")
        raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError):
        write_atomic(path, render)
    assert path.read_text() == "previous, complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_harness_killed_outright_leaves_a_run_that_reports(runs: Callable[..., Run], tmp_path: Path) -> None:
    """SIGKILL to memsoak and Locust (no chance to clean up): what was saved still renders."""
    run = runs(*SLOW_RUN)
    run.wait_for(lambda: run.checkpoints_taken() >= 1)
    pid = run.target_pid()
    run.kill()
    os.kill(pid, signal.SIGKILL)  # the target has its own session: the group kill missed it
    result = subprocess.run(
        [sys.executable, "-m", "memsoak", "report", str(run.out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = run.report()
    assert len(report["checkpoints"]) >= 2 and report["samples"]
    assert report["suspects"] and Path(report["suspects"][0]["file"]).name == "slow_leak.py"
    assert json.loads((run.out / "run.json").read_text())["status"] == "running"


AGENT_SIZES_PROBE = """
import json, sys, tracemalloc
from pathlib import Path
from memsoak.agent import tracing

tracemalloc.start(1)
ballast = [bytes(100) for _ in range(20_000)]  # something to snapshot
agent_dir = str(Path(tracing.__file__).parent)

def agent_bytes():
    snapshot = tracemalloc.take_snapshot()
    agent = snapshot.filter_traces([tracemalloc.Filter(True, agent_dir + "/*")])
    return sum(stat.size for stat in agent.statistics("filename"))

rounds = []
for _ in range(6):
    doc = tracing.take_snapshot(0)
    assert doc["sites"]
    del doc
    rounds.append([agent_bytes(), tracing.descriptions_known()])
assert len(ballast) == 20_000
json.dump(rounds, sys.stdout)
"""


def test_agent_keeps_no_snapshots_between_snapshots() -> None:
    """Inside the target the agent keeps only a small cache of frame descriptions: its live
    memory does not grow with the number of snapshots taken. Measured in a fresh interpreter, as
    in a target: in the suite's own process, threads and frames other tests left behind add new
    descriptions between snapshots, and one resize of that cache's dict reads as growth."""
    probe = subprocess.run(
        [sys.executable, "-c", AGENT_SIZES_PROBE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    rounds = json.loads(probe.stdout)
    sizes = [size for size, _known in rounds]
    # The first snapshot fills the description cache; after that, nothing accumulates.
    assert max(sizes[1:]) - sizes[1] < 16 * 1024, rounds
    assert max(sizes) < 2 * 1024 * 1024, rounds


def _locust_workers(run: Run, count: int) -> list[psutil.Process]:
    workers = [child for child in psutil.Process(run.process.pid).children() if "--worker" in child.cmdline()]
    assert len(workers) == count
    return workers


def _served_at_each_snapshot(run: Run, warmup: int) -> None:
    """Each snapshot saw exactly the requests it claims: the target's workers count what they
    served, and the sum is the warm-up plus the snapshot's measured requests, on the dot."""
    for path in sorted((run.out / "snapshots").glob("*.json")):
        doc = json.loads(path.read_text())
        assert sum(w["requests_served"] for w in doc["workers"]) == warmup + doc["requests"], path.name


# Two target processes, so every snapshot carries the target's own request count per worker.
DISTRIBUTED_RUN = (*SLOW_RUN[:7], "2", *SLOW_RUN[8:], "--server-workers", "2", "--spawn-rate", "100")


def test_locust_worker_killed_in_distributed_mode(runs: Callable[..., Run]) -> None:
    """A Locust worker killed mid-phase: once the other has drained, the master counts on the
    target what the lost one left undone and sends it to the survivor. The budget stays exact
    and the report says what happened."""
    run = runs(*DISTRIBUTED_RUN, "--workers", "2")
    run.wait_for(lambda: run.checkpoints_taken() >= 1)
    time.sleep(0.5)  # into the next phase (1,000 requests at 10 ms each over 5 users: seconds)
    _locust_workers(run, 2)[0].kill()
    assert run.finish() == 0, run.stderr()
    assert "Traceback" not in run.stderr()
    report = run.report()
    assert report["requests"]["measured"] == 2000
    assert [c["requests"] for c in report["checkpoints"]] == [0, 1000, 2000]
    _served_at_each_snapshot(run, 50)
    assert report["verdict"] == expected_verdict(SLOW)
    stats = report["locust_stats"]
    assert stats["workers_lost"] == 1 and stats["requests_not_made"] == 0
    assert 0 < stats["requests_resent"] < 1000
    events = " | ".join(report["events"])
    assert "lost (no heartbeat)" in events
    assert f"re-sent the {stats['requests_resent']} requests" in events
    markdown = (run.out / "report.md").read_text()
    assert f"1 Locust worker(s) lost, {stats['requests_resent']:,} requests re-sent" in markdown
    assert "re-sent the" in run.stdout()  # said in the terminal too
    assert_no_partial_files(run.out)


def test_last_locust_worker_killed_in_distributed_mode(runs: Callable[..., Run]) -> None:
    """No worker left to take the rest: exit 3 with one line, and the report says exactly how
    many requests of the budget were not made; what was made is measured, on the dot."""
    run = runs(*DISTRIBUTED_RUN, "--workers", "1")
    run.wait_for(lambda: run.checkpoints_taken() >= 1)
    time.sleep(0.5)
    _locust_workers(run, 1)[0].kill()
    assert run.finish() == 3
    error = run.stderr().strip().splitlines()
    assert len(error) == 1 and "Traceback" not in run.stderr(), run.stderr()
    assert "load failed at" in error[0] and "were not made" in error[0]
    report = run.report()
    stats = report["locust_stats"]
    assert stats["workers_lost"] == 1 and stats["requests_resent"] == 0
    measured = report["requests"]["measured"]
    assert 1000 <= measured < 2000
    assert measured + stats["requests_not_made"] == 2000
    assert f"{stats['requests_not_made']} requests of the budget of 2050 were not made" in error[0]
    _served_at_each_snapshot(run, 50)
    assert report["checkpoints"][-1]["requests"] == measured
    assert "not made" in (run.out / "report.md").read_text()
    assert_no_partial_files(run.out)
