"""Time-bound soaks: clock-driven checkpoints, the history they leave, SIGKILL and Ctrl-C halfway,
and the agent's Prometheus metrics."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import gevent
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memsoak.history import History
from memsoak.locust.gate import BudgetSpent, RequestGate
from tests.conftest import default_sigint

REPO = Path(__file__).resolve().parent.parent


def run_process(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


LEAK_APP = "targets.soak.steady_leak:app"
PLATEAU_APP = "targets.soak.plateau_cache:app"
# Few frames keep the snapshots' pauses short on a busy machine; the planted lines are innermost.
SOAK = ["--duration", "20s", "--checkpoint-every", "4s", "--users", "4", "--warmup", "50", "--frames", "3"]


def expected_verdict(app: str) -> str:
    module = app.split(":")[0]
    doc = ast.get_docstring(ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())) or ""
    (line,) = [line for line in doc.splitlines() if line.startswith("Expected verdict:")]
    return line.split(":", 1)[1].strip()


def snapshot_labels(run_dir: Path) -> list[str]:
    return [p.stem.split("-", 1)[1] for p in sorted((run_dir / "snapshots").glob("*.json"))]


# -- the gate's clock mode --------------------------------------------------------------------


def test_open_ended_gate_pauses_at_now_and_drains_in_flight_requests() -> None:
    seen: list[tuple[int, int]] = []
    gate = RequestGate([5], lambda count: seen.append((count, gate.in_flight)), open_ended=True)
    done = {"requests": 0}

    def user() -> None:
        try:
            while True:
                gate.acquire()
                gevent.sleep(0.001)
                gate.release()
                done["requests"] += 1
        except BudgetSpent:
            pass

    users = [gevent.spawn(user) for _ in range(4)]
    gevent.sleep(0.05)
    assert seen == [(5, 0)]  # the warm-up boundary, with nothing in flight
    assert gate.completed > 5 and gate.budget is None  # no budget after it
    drained: list[tuple[int, int, int]] = []
    gate.drain(lambda completed: drained.append((completed, gate.in_flight, gate.completed)))
    (completed, in_flight, after), = drained  # fmt: skip
    assert in_flight == 0 and completed == after
    gevent.sleep(0.05)
    assert gate.completed > completed  # reopened
    gate.close()
    gevent.joinall(users, timeout=5)
    assert all(u.dead for u in users)
    gate.drain(lambda _: pytest.fail("a closed gate runs no action"))


def test_count_gate_cannot_be_drained_before_its_boundaries() -> None:
    gate = RequestGate([0, 10], lambda _: None)
    gevent.sleep(0)
    with pytest.raises(RuntimeError):
        gate.drain(lambda _: None)


# -- real soaks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def soaks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 20 s soak of the leaking target, judged against three earlier quiet nights, then one of
    the plateau target, both recorded in one history."""
    base = tmp_path_factory.mktemp("soaks")
    history_path = base / "history.sqlite"
    history = History(history_path)
    for night, bpr in enumerate((3.0, 0.0, 6.0)):
        run_id = history.start(
            scenario="soak-leak", target=LEAK_APP, revision=f"night{night}", run_dir=str(base), plan="20 s"
        )
        history.finish(run_id, status="finished", verdict="no-leak", measured=2000,
                       bytes_per_request=bpr, rss_per_request=0.0, suspects=[])  # fmt: skip
    results: dict[str, object] = {"base": base, "history": history_path}
    for name, app in (("leak", LEAK_APP), ("plateau", PLATEAU_APP)):
        out = base / name
        results[name] = run_process(
            [sys.executable, "-m", "memsoak", "run", "--app", app, *SOAK, "--out", str(out),
             "--history", str(history_path), "--scenario", f"soak-{name}", "--fail-on-regression"],
            cwd=base, timeout=300,
        )  # fmt: skip
    return results


@pytest.mark.parametrize("name, app", [("leak", LEAK_APP), ("plateau", PLATEAU_APP)])
def test_soak_reaches_the_expected_verdict_on_a_clock(soaks: dict[str, object], name: str, app: str) -> None:
    result = soaks[name]
    assert isinstance(result, subprocess.CompletedProcess)
    run_dir = Path(str(soaks["base"])) / name
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verdict"] == expected_verdict(app), result.stdout + result.stderr
    labels = snapshot_labels(run_dir)
    assert labels[0] == "baseline" and labels[-1] == "final" and "checkpoint" in labels, labels
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "finished"
    assert not any("stopped after" in event for event in state["events"])  # it ran its course
    if name == "leak":
        assert report["suspects"][0]["file"].endswith("targets/soak/steady_leak.py")
        assert report["suspects"][0]["line"] == 19
        # 1 KiB a request against three nights near 0 B: a regression, hence exit 1.
        assert "regression check: REGRESSION" in result.stdout
        assert result.returncode == 1, result.stdout + result.stderr
    else:
        assert "regression check: not judged" in result.stdout  # first night of this scenario
        assert result.returncode == 0, result.stdout + result.stderr


def test_soaks_are_in_the_history_and_compare_names_the_new_leak(soaks: dict[str, object]) -> None:
    history_path = Path(str(soaks["history"]))
    runs = {r.scenario: r for r in History(history_path).runs() if not r.revision.startswith("night")}
    leak, plateau = runs["soak-leak"], runs["soak-plateau"]
    assert (leak.status, leak.verdict, plateau.status, plateau.verdict) == (
        "finished", "leak", "finished", "no-leak",
    )  # fmt: skip
    assert leak.bytes_per_request is not None and leak.bytes_per_request > 500
    assert leak.suspects[0]["line"] == 19 and leak.run_dir == str(Path(str(soaks["base"])) / "leak")
    memsoak = [sys.executable, "-m", "memsoak"]
    base = Path(str(soaks["base"]))
    listing = run_process([*memsoak, "history", "--history", str(history_path)], cwd=base, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert (
        "scenario soak-leak: 4 run(s)" in listing.stdout
        and "scenario soak-plateau: 1 run(s)" in listing.stdout
    )
    compared = run_process(
        [*memsoak, "compare", str(plateau.id), str(leak.id), "--history", str(history_path)],
        cwd=base,
        timeout=120,
    )
    assert compared.returncode == 0, compared.stderr
    new_section = compared.stdout.split("new suspects (in B only):", 1)[1].split("\n\n")[0]
    assert "steady_leak.py:19" in new_section.splitlines()[1]
    assert "verdict no-leak" in compared.stdout and "verdict leak" in compared.stdout


# -- a soak cut short ---------------------------------------------------------------------------


def _start_soak(tmp_path: Path) -> subprocess.Popen[str]:
    # Its own session, like a shell job: a signal to its group reaches memsoak, Locust and the target.
    return subprocess.Popen(
        [sys.executable, "-m", "memsoak", "run", "--app", LEAK_APP, "--duration", "120s",
         "--checkpoint-every", "2s", "--users", "4", "--warmup", "50", "--frames", "3",
         "--out", "run", "--history", "history.sqlite"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=default_sigint,
    )  # fmt: skip


def _wait_for_checkpoint(process: subprocess.Popen[str], run_dir: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        # Two: the first checkpoint's bookkeeping (run.json, history) is done once the second
        # checkpoint's file appears.
        if snapshot_labels(run_dir).count("checkpoint") >= 2:
            return
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no checkpoint snapshot came: {process.communicate()[0]}")


def test_a_soak_killed_outright_leaves_a_partial_report_and_an_unfinished_row(
    tmp_path: Path, memsoak: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    process = _start_soak(tmp_path)
    _wait_for_checkpoint(process, tmp_path / "run")
    target = psutil.Process(
        json.loads((tmp_path / "run" / "run.json").read_text())["parameters"]["target_pid"]
    )
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    # The target is in a session of its own (Ctrl-C must not reach it), so the kill missed it:
    # it ends with the run that started it all the same.
    target.wait(timeout=60)
    (record,) = History(tmp_path / "history.sqlite").runs()
    assert record.status == "unfinished" and record.verdict is None
    assert record.measured_requests > 0  # the checkpoint's numbers were recorded as it came
    assert not (tmp_path / "run" / "report.json").exists()
    rendered = memsoak("report", "run", timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["requests"]["measured"] > 0 and len(report["checkpoints"]) >= 2
    listing = memsoak("history", "--history", "history.sqlite", timeout=120)
    assert "unfinished" in listing.stdout


def test_ctrl_c_ends_a_soak_cleanly_with_its_reports(tmp_path: Path) -> None:
    process = _start_soak(tmp_path)
    _wait_for_checkpoint(process, tmp_path / "run")
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 130, output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["verdict"] in ("leak", "inconclusive"), output
    assert report["requests"]["measured"] == report["checkpoints"][-1]["requests"]
    (record,) = History(tmp_path / "history.sqlite").runs()
    assert record.status == "interrupted" and record.verdict == report["verdict"]
    assert "interrupted" in output and "Traceback" not in output


# -- watching live ------------------------------------------------------------------------------


def _get(url: str, token: str | None, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_agent_metrics_show_memory_and_the_growing_site(start_target, token: str) -> None:
    target = start_target(LEAK_APP, frames=3)
    metrics = f"{target.url}/__memsoak__/metrics"
    assert _get(metrics, None)[0] == 401
    assert _get(metrics, "wrong")[0] == 401
    # Warm-up, as in a run: the first requests and the agent's first snapshot import modules.
    for _ in range(50):
        urllib.request.urlopen(f"{target.url}/", timeout=30).read()
    _get(f"{target.url}/__memsoak__/snapshot", token, "POST")
    status, content_type, body = _get(metrics, token)  # watching starts with the first scrape
    assert status == 200 and content_type.startswith("text/plain")
    values = {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples}
    assert values["memsoak_rss_bytes"] > 10_000_000 and values["memsoak_traced_bytes"] > 0
    _get(f"{target.url}/__memsoak__/snapshot", token, "POST")
    for _ in range(300):
        urllib.request.urlopen(f"{target.url}/", timeout=30).read()
    _get(f"{target.url}/__memsoak__/snapshot", token, "POST")
    body = _get(metrics, token)[2]
    growth = {
        s.labels["site"]: s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
        if s.name == "memsoak_site_growth_bytes"
    }
    top_site, top_growth = max(growth.items(), key=lambda item: item[1])
    assert top_site.endswith("targets/soak/steady_leak.py:19") and top_growth >= 300 * 1024
    counts = {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples}
    assert counts["memsoak_requests_served_total"] >= 300 and counts["memsoak_snapshots_observed_total"] == 2
