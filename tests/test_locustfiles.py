"""Any locustfile, unmodified: plain `HttpUser` and `FastHttpUser` scenarios with no memsoak import
get the exact budget under `memsoak run --locustfile` and under plain `locust -f auto.py,theirs.py`;
a user with a client of its own is refused in one line; when Locust cannot start, its own error
line is what memsoak prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memsoak.target import TargetProcess

REPO = Path(__file__).resolve().parent.parent
TOKEN = "locustfile-test-token"


def memsoak_run(tmp_path: Path, locustfile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memsoak", "run", "--app", "targets.seed_fixed.app:app", "--locustfile",
         str(locustfile), "--requests", "400", "--warmup", "60", "--users", "6", "--checkpoints", "2",
         "--out", str(tmp_path / "out"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def counts(out: Path) -> tuple[dict[str, int], int]:
    report = json.loads((out / "report.json").read_text())
    return report["requests"], report["locust_stats"]["requests"]


@pytest.mark.parametrize("name", ["plain_http.py", "plain_fast.py"])
def test_an_unmodified_locustfile_gets_the_exact_budget(tmp_path: Path, name: str) -> None:
    source = (REPO / "locustfiles" / name).read_text()
    assert "memsoak" not in source.split('"""')[-1]  # the code itself never names memsoak
    done = memsoak_run(tmp_path, REPO / "locustfiles" / name)
    assert done.returncode == 0, done.stderr
    requests, sent = counts(tmp_path / "out")
    assert (requests["warmup"], requests["measured"], requests["failed"]) == (60, 400, 0)
    assert sent == 460  # not one request more: every user stopped at the budget


def test_plain_locust_with_the_auto_module_first(tmp_path: Path) -> None:
    auto = subprocess.run(
        [sys.executable, "-m", "memsoak.locust.auto"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.strip()
    target = TargetProcess.start("targets.seed_fixed.app:app", token=TOKEN, log_path=tmp_path / "target.log")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "locust", "-f", f"{auto},{REPO / 'locustfiles' / 'plain_http.py'}",
             "--headless", "-u", "4", "-r", "100", "-t", "300s", "--host", target.url,
             "--memsoak-requests", "300", "--memsoak-warmup", "50", "--memsoak-checkpoints", "2",
             "--memsoak-out", str(tmp_path / "out"), "--memsoak-history", str(tmp_path / "h.sqlite")],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
            env={**os.environ, "LOCUST_MEMSOAK_AGENT_TOKEN": TOKEN},
        )  # fmt: skip
    finally:
        target.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    requests, sent = counts(tmp_path / "out")
    assert (requests["warmup"], requests["measured"], sent) == (50, 300, 350)


def test_a_user_with_its_own_client_is_refused_in_one_line(tmp_path: Path) -> None:
    locustfile = tmp_path / "grpcish.py"
    locustfile.write_text(
        "from locust import User, task\n\n\n"
        "class Grpcish(User):\n"
        "    @task\n"
        "    def call(self):\n"
        "        self.environment.events.request.fire(request_type='grpc', name='Get', response_time=1,\n"
        "                                             response_length=0, exception=None, context={})\n"
    )
    done = memsoak_run(tmp_path, locustfile)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Grpcish" in lines[0] and "cannot gate" in lines[0] and "exact" in lines[0]


def test_when_locust_cannot_start_its_own_error_line_is_printed(tmp_path: Path) -> None:
    locustfile = tmp_path / "needs_client.py"
    locustfile.write_text("from locust import HttpUser\n\nimport shopclient  # noqa: F401\n")
    done = memsoak_run(tmp_path, locustfile)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "No module named 'shopclient'" in lines[0], lines
