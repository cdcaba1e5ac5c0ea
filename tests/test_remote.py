"""Remote targets: a target started on its own (`memsoak serve`), reached only through its agent."""

from __future__ import annotations

import ast
import json
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

SEED = "targets.seed_leak.app:app"
# Code that runs on the harness's side: it gets memory figures from the agent only.
HARNESS_CODE = ["memsoak/run.py", "memsoak/cli.py", "memsoak/agent_client.py", "memsoak/locust"]


def _ready_line(process: subprocess.Popen[bytes], timeout: float = 120) -> dict[str, object]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("memsoak serve printed nothing")
    return dict(json.loads(process.stdout.readline()))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, object]]:
    """`memsoak serve` as its own process, as on another machine; its ready line (url, the token
    it made and printed, pid)."""
    env = {k: v for k, v in os.environ.items() if k != "MEMSOAK_TOKEN"}
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "memsoak", "serve", SEED, "--app-dir", str(REPO), "--frames", "3"],
            stdout=subprocess.PIPE, stderr=log, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:
        yield _ready_line(process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_run_against_a_separately_started_target(memsoak, served, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memsoak(
        "run", "--host", str(served["url"]), "--agent-token", str(served["token"]),
        "--requests", "500", "--warmup", "50", "--checkpoints", "3", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "leak"
    assert report["suspects"][0]["file"].endswith("seed_leak/fetchuserdata.py")
    # Every memory figure is the target's own, read inside it: the pid is the served process,
    # and RSS grew by about what the leak holds (5,000 pointers, ~40 KB, per request).
    assert report["parameters"]["target_pid"] == served["pid"]
    assert report["rss_bytes"]["end"] - report["rss_bytes"]["start"] > 500 * 20_000
    assert not (out / "target.log").exists()  # memsoak run started no target of its own


def test_harness_code_never_reads_memory_locally() -> None:
    """psutil (or resource) on the harness's side would measure the wrong machine's memory."""
    files = []
    for entry in HARNESS_CODE:
        path = REPO / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    assert len(files) > 5
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] in ("psutil", "resource") for n in names), file


def _plain_locust(url: str, token: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "seed.py"), "--headless",
         "--only-summary", "-u", "5", "-r", "5", "--host", url, "-t", "300s",
         "--memsoak-requests", "200", "--memsoak-warmup", "20", "--memsoak-checkpoints", "1",
         "--memsoak-out", str(out), *extra],
        cwd=out.parent, env={**os.environ, "LOCUST_MEMSOAK_AGENT_TOKEN": token},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_locust_waits_for_a_target_that_starts_after_it(tmp_path: Path, token: str) -> None:
    """What `memsoak run` does to start both at once: Locust first, the target a little later."""
    from memsoak.run import free_port

    url = f"http://127.0.0.1:{free_port()}"
    locust = _plain_locust(url, token, tmp_path / "out", "--memsoak-agent-wait", "120")
    try:
        assert locust.stdout is not None
        for line in locust.stdout:  # Locust logs this before its init event, where the plugin waits
            if "Starting Locust" in line:
                break
        with open(tmp_path / "serve.log", "wb") as log:
            target = subprocess.Popen(
                [sys.executable, "-m", "memsoak", "serve", SEED, "--app-dir", str(REPO), "--frames", "2",
                 "--bind", url.removeprefix("http://")],
                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "MEMSOAK_TOKEN": token},
            )  # fmt: skip
        try:
            output, _ = locust.communicate(timeout=600)
        finally:
            target.terminate()
            target.wait(30)
    finally:
        if locust.poll() is None:
            locust.kill()
            locust.wait()
    assert locust.returncode == 0, output[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # Not one request went out before the target answered: none failed, the budget is exact.
    assert report["requests"] == {"warmup": 20, "measured": 200, "failed": 0}
    assert report["verdict"] == "leak"


def test_locust_gives_up_waiting_with_one_line(tmp_path: Path, token: str) -> None:
    from memsoak.run import free_port

    locust = _plain_locust(
        f"http://127.0.0.1:{free_port()}", token, tmp_path / "out", "--memsoak-agent-wait", "1"
    )
    output, _ = locust.communicate(timeout=120)
    assert locust.returncode == 2
    errors = [line for line in output.splitlines() if line.startswith("memsoak: error:")]
    assert len(errors) == 1 and "no agent answering" in errors[0], output[-2000:]
    assert "Traceback" not in output


def test_a_quick_exit_still_runs_the_apps_exit_handlers(tmp_path: Path) -> None:
    """`--quick-exit` (what `memsoak run` starts its targets with) skips the interpreter's
    collections at exit, not its exit: atexit handlers run and the exit code is clean."""
    (tmp_path / "exiting_app.py").write_text(
        "import atexit, os\n"
        "atexit.register(lambda: open(os.environ['MARK_FILE'], 'w').write('atexit ran'))\n"
        "kept = [[n] for n in range(100_000)]\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n"
    )
    mark = tmp_path / "mark"
    process = subprocess.Popen(
        [sys.executable, "-m", "memsoak", "serve", "exiting_app:app", "--app-dir", str(tmp_path),
         "--quick-exit"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "MARK_FILE": str(mark)},
    )  # fmt: skip
    try:
        assert "url" in _ready_line(process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
    assert mark.read_text() == "atexit ran"
