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
