"""The worked example, end to end: real target process, real Locust, the real CLI."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_process

MiB = 1024 * 1024


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _expected_verdict(module_file: Path) -> str:
    match = re.search(r"^Expected verdict: (\S+)$", module_file.read_text(), re.MULTILINE)
    assert match, f"{module_file} states no expected verdict"
    return match.group(1)


def test_seed_leak_reproduces_the_write_up(memsoak, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memsoak("run", "--app", "targets.seed_leak.app:app", "--requests", "10000", "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    report = _report(out)
    assert report["verdict"] == _expected_verdict(REPO / "targets/seed_leak/app.py") == "leak"
    assert report["requests"]["measured"] == 10000
    top = report["suspects"][0]
    assert Path(top["file"]).name == "fetchuserdata.py" and top["line"] == 6
    assert top["code"] == "users_list.extend(data)"
    assert top["size_diff"] >= 370 * MiB
    assert 36_000 <= top["bytes_per_request"] <= 48_000
    assert report["rss_bytes"]["end"] - report["rss_bytes"]["start"] >= 350_000_000
    assert [frame["function"] for frame in top["traceback"]][-2:] == ["index", "user_data"]
    # The terminal names the verdict and the guilty line; the Markdown report exists.
    assert "verdict LEAK" in result.stdout and "fetchuserdata.py:6" in result.stdout
    assert "users_list.extend(data)" in (out / "report.md").read_text()
    # What ran: the series one frame deep, the cheapest depth, then the call paths deeper; the
    # parameters say the depth the series was traced at.
    assert [(p["name"], p["requests"], p["frames"]) for p in report["phases"]] == [
        ("warm-up requests", 200, 0),
        ("measured", 10000, 1),
        ("watching the call paths", 100, 10),
    ]
    assert report["parameters"]["frames"] == 1 and report["requests"]["window"] == 100
    assert (
        "What ran: 200 warm-up requests, untraced; 10,000 measured, traced 1 frame deep"
        in (out / "report.md").read_text()
    )


def test_seed_fixed_is_not_a_leak(memsoak, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memsoak("run", "--app", "targets.seed_fixed.app:app", "--requests", "10000", "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    report = _report(out)
    assert report["verdict"] == _expected_verdict(REPO / "targets/seed_fixed/app.py") == "no-leak"
    assert report["requests"]["measured"] == 10000
    assert all(s["bytes_per_request"] < 1024 for s in report["suspects"])


def test_fail_on_leak_exit_code(memsoak, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memsoak("run", "--requests", "600", "--warmup", "50", "--fail-on-leak", "--out", str(out))
    assert result.returncode == 1, result.stderr + result.stdout
    assert _report(out)["verdict"] == "leak"


@pytest.mark.parametrize("users", [1, 7])
def test_plain_locust_with_the_plugin(start_target, token: str, tmp_path: Path, users: int) -> None:
    target = start_target("targets.seed_leak.app:app")
    out = tmp_path / "out"
    result = run_process(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(REPO / "locustfiles/seed.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            "100",
            "--host",
            target.url,
            "--memsoak-requests",
            "2000",
            "--memsoak-warmup",
            "37",
            "--memsoak-out",
            str(out),
            "-t",
            "300s",
        ],
        cwd=tmp_path,
        env={"MEMSOAK_TOKEN": token},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(out)
    assert report["verdict"] == "leak"
    assert report["requests"] == {"warmup": 37, "measured": 2000, "failed": 0}
    # Exactly the budget went out: Locust's own count agrees.
    assert report["locust_stats"]["requests"] == 2037
    assert [c["requests"] for c in report["checkpoints"]] == [0, 400, 800, 1200, 1600, 2000]
    assert Path(report["suspects"][0]["file"]).name == "fetchuserdata.py"
    assert len(list((out / "snapshots").glob("*.json"))) == 6


def test_locust_options_from_env_and_conf(start_target, token: str, tmp_path: Path) -> None:
    target = start_target("targets.seed_fixed.app:app")
    (tmp_path / "locust.conf").write_text("memsoak-requests = 300\nmemsoak-checkpoints = 2\n")
    result = run_process(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(REPO / "locustfiles/seed.py"),
            "--headless",
            "-u",
            "3",
            "-r",
            "100",
            "--host",
            target.url,
            "-t",
            "300s",
        ],
        cwd=tmp_path,
        env={"LOCUST_MEMSOAK_AGENT_TOKEN": token, "LOCUST_MEMSOAK_WARMUP": "10", "LOCUST_MEMSOAK_OUT": "o"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(tmp_path / "o")
    assert report["requests"]["measured"] == 300 and report["requests"]["warmup"] == 10
    assert [c["requests"] for c in report["checkpoints"]] == [0, 150, 300]


def test_plain_locust_fails_fast_without_an_agent(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = run_process(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(REPO / "locustfiles/seed.py"),
            "--headless",
            "--host",
            url,
        ],
        cwd=tmp_path,
        env={"MEMSOAK_TOKEN": "t"},
        timeout=120,
    )
    assert result.returncode == 2
    assert "memsoak: error: no agent answering" in result.stderr
    assert "Traceback" not in result.stderr
