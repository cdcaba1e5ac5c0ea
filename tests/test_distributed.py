"""Distributed Locust: a real master and real worker processes share one exact budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memsoak.agent_client import AgentClient
from memsoak.locust.quota import split_quota
from memsoak.run import free_port
from tests.conftest import REPO

SEED = "targets.seed_leak.app:app"
LOCUSTFILE = str(REPO / "locustfiles" / "seed.py")


@given(
    st.integers(min_value=0, max_value=10**7),
    st.dictionaries(st.text(min_size=1, max_size=5), st.integers(min_value=0, max_value=1000), min_size=1),
)
def test_split_quota_sums_exactly(total: int, weights: dict[str, int]) -> None:
    shares = split_quota(total, weights)
    assert sum(shares.values()) == total
    assert set(shares) == set(weights)
    if any(weights.values()):
        assert all(shares[n] == 0 for n, w in weights.items() if w == 0)


def test_split_quota_follows_users() -> None:
    assert split_quota(10_000, {"a": 4, "b": 3, "c": 3}) == {"a": 4000, "b": 3000, "c": 3000}
    assert split_quota(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert split_quota(5, {"a": 0, "b": 0}) == {"a": 3, "b": 2}
    with pytest.raises(ValueError):
        split_quota(5, {})


def _start_workers(count: int, port: int, tmp_path: Path) -> list[subprocess.Popen[bytes]]:
    workers = []
    for index in range(count):
        log = open(tmp_path / f"worker-{index}.log", "wb")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
            )
        )  # fmt: skip
        log.close()
    return workers


def test_plain_locust_master_and_workers_keep_the_budget_exact(
    tmp_path: Path, start_target, token: str
) -> None:
    target = start_target(SEED, app_dir=str(REPO), frames=3)
    port = free_port()
    out = tmp_path / "out"
    workers = _start_workers(3, port, tmp_path)
    try:
        master = subprocess.run(
            [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--master", "--headless",
             "--expect-workers", "3", "--expect-workers-max-wait", "120",
             "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
             "-u", "6", "-r", "100", "-t", "300s", "--host", target.url,
             "--memsoak-requests", "900", "--memsoak-warmup", "90", "--memsoak-checkpoints", "3",
             "--memsoak-out", str(out)],
            cwd=tmp_path, env={**os.environ, "MEMSOAK_TOKEN": token},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        codes = [w.wait(60) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert master.returncode == 0, master.stderr[-2000:]
    assert codes == [0, 0, 0]
    # 990 in all (warm-up included), not 3 x 990 and not about 990.
    served = AgentClient(target.url, token).status()["requests_served"]
    assert served == 990
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "leak"
    assert report["requests"] == {"warmup": 90, "measured": 900, "failed": 0}
    assert [c["requests"] for c in report["checkpoints"]] == [0, 300, 600, 900]
    assert report["parameters"]["locust_workers"] == 3
    # One report, written by the master: the workers print no verdict.
    assert master.stdout.count("memsoak: verdict") == 1
    for index in range(3):
        assert "memsoak: verdict" not in (tmp_path / f"worker-{index}.log").read_text()


def test_workers_pause_at_every_checkpoint(memsoak, tmp_path: Path) -> None:
    """Each snapshot sees exactly the requests it claims: a gunicorn target's workers count what
    they served, and at each snapshot the count is warm-up plus the checkpoint, on the dot."""
    out = tmp_path / "out"
    result = memsoak(
        "run", "--workers", "2", "--server", "gunicorn", "--server-workers", "2",
        "--requests", "400", "--warmup", "40", "--checkpoints", "2", "--frames", "2",
        "--users", "6", "--spawn-rate", "100", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    snapshots = sorted((out / "snapshots").glob("*.json"))
    assert len(snapshots) == 3
    for path in snapshots:
        doc = json.loads(path.read_text())
        served = sum(w["requests_served"] for w in doc["workers"])
        assert served == 40 + doc["requests"], path.name
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "leak"
    assert report["suspects"][0]["file"].endswith("seed_leak/fetchuserdata.py")
    assert sorted((out).glob("locust-worker-*.log")) and len(list(out.glob("locust-worker-*.log"))) == 2


def test_soak_on_the_clock_with_locust_workers(memsoak, tmp_path: Path) -> None:
    """`--duration` with `--workers`: the load goes in short drained chunks, so each clock
    checkpoint and the end come at an exact count, which the target's own counters confirm."""
    out = tmp_path / "out"
    result = memsoak(
        "run", "--app", "targets.soak.steady_leak:app", "--workers", "2", "--server", "gunicorn",
        "--server-workers", "2", "--duration", "16s", "--checkpoint-every", "4s", "--warmup", "50",
        "--frames", "3", "--users", "4", "--spawn-rate", "100", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    labels = [p.stem.split("-", 1)[1] for p in sorted((out / "snapshots").glob("*.json"))]
    assert labels[0] == "baseline" and labels[-1] == "final" and labels.count("checkpoint") >= 2, labels
    counts = []
    for path in sorted((out / "snapshots").glob("*.json")):
        doc = json.loads(path.read_text())
        assert sum(w["requests_served"] for w in doc["workers"]) == 50 + doc["requests"], path.name
        counts.append(doc["requests"])
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] > counts[1] > 0
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "leak"  # steady_leak's "Expected verdict: leak"
    assert report["suspects"][0]["file"].endswith("targets/soak/steady_leak.py")
    assert report["requests"]["measured"] == counts[-1]
    state = json.loads((out / "run.json").read_text())
    assert state["status"] == "finished"
    assert not any("stopped after" in event for event in state["events"])  # it ran its course
