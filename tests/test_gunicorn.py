"""Multi-worker targets under real gunicorn: every snapshot comes from every worker."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import psutil

from analysis.merge import merge_snapshot_docs
from analysis.model import Frame
from analysis.snapshot_io import snapshot_from_dict
from memsoak.agent_client import AgentClient
from tests.conftest import REPO

SEED = "targets.seed_leak.app:app"


def _part(pid: int, rss: int, frames: list[list[object]], sites: list[list[object]]) -> dict[str, object]:
    return {
        "format": "memsoak-snapshot", "version": 1, "pid": pid, "taken_at": 1.0 + pid,
        "duration_s": 0.1 * pid, "rss_bytes": rss, "traced_bytes": rss // 2,
        "tracemalloc_overhead_bytes": 10, "frames_limit": 5, "harness_files": ["/agent/"],
        "library_files": ["/lib/"], "frames": frames, "sites": sites, "requests_served": pid * 10,
    }  # fmt: skip


def test_merge_sums_sites_per_traceback_across_frame_tables() -> None:
    a = ["app.py", 6, "leak", "cache.append(x)"]
    b = ["app.py", 9, "view", "leak()"]
    c = ["lib.py", 1, "f", "pass"]
    # The same traceback (b -> a) under different frame indexes in each worker's table.
    one = _part(1, 1000, [a, b, c], [[100, 1, [1, 0]], [5, 1, [2]]])
    two = _part(2, 3000, [c, b, a], [[250, 2, [1, 2]]])
    merged = snapshot_from_dict(merge_snapshot_docs([two, one], {1: 10, 2: 20}))
    leak = (Frame(*b), Frame(*a))  # type: ignore[arg-type]
    assert merged.sites[leak].size == 350 and merged.sites[leak].count == 3
    assert merged.sites[leak].workers == (100, 250)  # in pid order, whatever order they came in
    assert merged.sites[(Frame(*c),)].workers == (5, 0)  # type: ignore[arg-type]
    assert merged.sites[(Frame(*c),)].size == 5  # type: ignore[arg-type]
    assert merged.rss_bytes == 4000 and merged.traced_bytes == 2000
    assert merged.duration_s == 0.2  # concurrent: the longest pause
    assert [(w.pid, w.rss_bytes, w.requests_served) for w in merged.workers] == [(1, 1000, 10), (2, 3000, 20)]


def test_leak_found_with_four_gunicorn_workers(memsoak, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memsoak(
        "run", "--app", SEED, "--app-dir", str(REPO), "--server", "gunicorn", "--server-workers", "4",
        "--requests", "600", "--warmup", "40", "--checkpoints", "2", "--frames", "2",
        "--users", "8", "--spawn-rate", "100", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "leak"  # the seed's docstring: "Expected verdict: leak"
    top = report["suspects"][0]
    assert top["file"].endswith("seed_leak/fetchuserdata.py") and top["line"] == 6
    # 5,000 pointers per request, summed over the workers (each holds only its own share).
    assert 35_000 < top["bytes_per_request"] < 50_000
    workers = report["workers"]
    assert len({w["pid"] for w in workers}) == 4
    assert sum(w["requests_served"] for w in workers) == 600
    assert report["rss_bytes"]["end"] == sum(w["rss_end"] for w in workers)
    for path in (out / "snapshots").glob("*.json"):
        assert len(json.loads(path.read_text())["workers"]) == 4, path.name
    markdown = (out / "report.md").read_text()
    assert "## Target workers" in markdown
    # Each worker's share of the leak, over the requests it served: the same ~40 KB per request.
    leak = {w["pid"]: next(s for s in w["suspects"] if s["rank"] == 1) for w in workers}
    for worker in workers:
        grown = leak[worker["pid"]]
        assert (grown["file"], grown["line"], grown["rank"]) == (top["file"], 6, 1), worker
        if worker["requests_served"] >= 50:  # too few requests make a noisy ratio
            assert 30_000 < grown["bytes_per_request"] < 55_000, worker
        assert len(worker["suspects"]) <= 5
    shares = sum(s["share"] for s in leak.values())
    assert abs(shares - 1) < 0.01, shares
    assert sum(s["size_diff"] for s in leak.values()) == top["size_diff"]
    table = markdown.split("### Suspects per worker", 1)[1]
    assert all(f"| {w['pid']} | #1 | `{top['file']}:6` |" in table for w in workers)


def test_any_worker_answers_for_all_and_restarted_workers_join(start_target, token: str) -> None:
    target = start_target(
        SEED, app_dir=str(REPO), frames=2, extra_args=("--server", "gunicorn", "--workers", "3")
    )
    agent = AgentClient(target.url, token)
    children = {p.pid for p in psutil.Process(target.pid).children()}
    assert len(children) == 3
    for _ in range(12):  # whichever worker the kernel hands the request to
        status = agent.status()
        assert status["pid"] in children
        assert {w["pid"] for w in status["workers"]} == children
        assert status["rss_bytes"] == sum(w["rss_bytes"] for w in status["workers"])
    # A killed worker leaves a stale socket; gunicorn starts another, which registers itself.
    victim = min(children)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = {p.pid for p in psutil.Process(target.pid).children()}
        if len(now) == 3 and victim not in now:
            pids = {w["pid"] for w in agent.status()["workers"]}
            if pids == now:
                break
        time.sleep(0.5)
    else:
        raise AssertionError("the restarted worker never joined the fan-out")
    snapshot = agent.snapshot(256)
    assert {w["pid"] for w in snapshot["workers"]} == now
    assert snapshot_from_dict(snapshot).traced_bytes == sum(w["traced_bytes"] for w in snapshot["workers"])


def test_forked_gevent_workers_answer_together(start_target, token: str) -> None:
    """`memsoak serve --workers N` without gunicorn: gevent's server forked after binding."""
    target = start_target(SEED, app_dir=str(REPO), frames=2, extra_args=("--workers", "2"))
    children = {p.pid for p in psutil.Process(target.pid).children()}
    assert len(children) == 2
    for _ in range(20):
        with urllib.request.urlopen(target.url + "/", timeout=30) as response:
            response.read()
    snapshot = AgentClient(target.url, token).snapshot(256)
    assert {w["pid"] for w in snapshot["workers"]} == children
    assert sum(w["requests_served"] for w in snapshot["workers"]) == 20
    target.stop()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in children)
