"""--until-confident: stop as soon as the verdict is settled, never early with a wrong one."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analysis.model import Frame, RequestCounts, RunData, SiteStat, Snapshot
from analysis.report import build_report
from analysis.sequential import CALL_PATH_WINDOW, NO_LEAK_MIN_REQUESTS, confident_checkpoints, settled
from memsoak.locust.gate import RequestGate

MEASURED_CAP = 3000
REPO = Path(__file__).resolve().parent.parent


def _run(memsoak: Callable[..., Any], tmp_path: Path, app: str) -> dict[str, Any]:
    out = tmp_path / "out"
    result = memsoak(
        "run", "--app", app, "--requests", str(MEASURED_CAP), "--warmup", "100",
        "--until-confident", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def test_seed_leak_settles_within_a_thousand_requests(memsoak: Callable[..., Any], tmp_path: Path) -> None:
    report = _run(memsoak, tmp_path, "targets.seed_leak.app:app")
    assert report["verdict"] == "leak"
    top = report["suspects"][0]
    assert top["file"].endswith("seed_leak/fetchuserdata.py") and top["line"] == 6
    assert report["requests"]["measured"] <= 1000
    assert any("verdict settled" in e for e in report["events"])
    # The series was traced one frame deep; the traceback is the call path the agent saw
    # reaching the line in the window after it, as deep as the target's default.
    snapshots = sorted((tmp_path / "out" / "snapshots").glob("*.json"))
    assert {json.loads(p.read_text())["frames_limit"] for p in snapshots} == {1}
    assert report["requests"]["window"] == CALL_PATH_WINDOW
    assert report["locust_stats"]["requests"] == sum(
        report["requests"][k] for k in ("warmup", "measured", "window")
    )
    assert top["paths_seen"] == 1 and len(top["traceback"]) == 10
    caller = top["traceback"][-2]
    assert caller["file"].endswith("seed_leak/app.py") and caller["function"] == "index"
    assert top["traceback"][-1]["code"] == "users_list.extend(data)"
    # `memsoak report DIR` gives the same traceback from what the run directory kept.
    assert memsoak("report", str(tmp_path / "out")).returncode == 0
    again = json.loads((tmp_path / "out" / "report.json").read_text())
    assert again["suspects"][0]["traceback"] == top["traceback"]
    # What keeps it alive was searched for during the window, in a forked child, with the
    # tracebacks as traced (not the deepened ones, which no trace has): the report carries it.
    retention = top["retention"]
    assert retention["found"] is True and retention["root"] == "module targets.seed_leak.app"
    assert retention["steps"][0].startswith("global users_list")
    assert any("in a forked child, while the windows after the series ran" in e for e in report["events"])
    assert again["suspects"][0]["retention"] == retention


def test_fixed_seed_does_not_stop_early_with_a_leak(memsoak: Callable[..., Any], tmp_path: Path) -> None:
    report = _run(memsoak, tmp_path, "targets.seed_fixed.app:app")
    assert report["verdict"] == "no-leak"
    # Either it ran to the cap, or it stopped because no-leak was settled, not before the floor.
    assert report["requests"]["measured"] >= NO_LEAK_MIN_REQUESTS


def test_schedule_is_dense_first_then_geometric_and_ends_at_the_cap() -> None:
    for cap in (1, 99, 100, 101, 1000, 10_000, 123_457):
        points = confident_checkpoints(cap)
        assert points[-1] == cap
        assert all(b > a for a, b in itertools.pairwise(points))
        RequestGate([0, *points], lambda _count: None)  # the gate accepts it as boundaries
    assert confident_checkpoints(1000) == [200, 400, 600, 800, 1000]
    assert len(confident_checkpoints(1_000_000)) < 40


def _snapshots(sizes: list[int], traced: list[int], step: int = 100) -> list[Snapshot]:
    site = (Frame("app.py", 3, "f", "x.append(y)"),)
    return [
        Snapshot(
            pid=1, taken_at=float(i), requests=i * step, rss_bytes=50_000_000 + t, traced_bytes=t,
            tracemalloc_overhead_bytes=0, frames_limit=1, duration_s=0.0,
            sites={site: SiteStat(size, 1)},
        )
        for i, (size, t) in enumerate(zip(sizes, traced, strict=True))
    ]  # fmt: skip


def _report(snapshots: list[Snapshot]) -> Any:
    measured = snapshots[-1].requests
    return build_report(RunData(snapshots, [], RequestCounts(0, measured, 0)))


def test_a_steady_leak_settles_and_a_stall_does_not() -> None:
    steady = [i * 40_000 * 250 for i in range(6)]
    leak = _snapshots(steady, steady, step=250)
    assert _report(leak).verdict.kind == "leak"
    assert settled(_report(leak), leak) is not None
    # Grew, then did not grow in the last interval: not settled, whatever the verdict says.
    stalled = [*steady[:5], steady[4]]
    stall = _snapshots(stalled, stalled, step=250)
    assert settled(_report(stall), stall) is None
    # Too few snapshots to put an interval on it.
    assert settled(_report(leak[:4]), leak[:4]) is None
    # Too few requests: a cache still filling grows just like this.
    early = _snapshots(steady, steady, step=100)
    assert _report(early).verdict.kind == "leak"
    assert settled(_report(early), early) is None


def test_no_leak_settles_only_after_enough_requests() -> None:
    flat = [1000 + (i % 2) * 50 for i in range(12)]
    early = _snapshots(flat, flat, step=100)  # 1,100 requests
    assert _report(early).verdict.kind == "no-leak"
    assert settled(_report(early), early) is None
    late = _snapshots(flat, flat, step=300)  # 3,300 requests
    assert settled(_report(late), late) is not None


@pytest.mark.parametrize("name", ["re_cache", "warm_cache"])
def test_corpus_look_alikes_do_not_stop_early_with_a_leak(
    memsoak: Callable[..., Any], tmp_path: Path, name: str
) -> None:
    """Caches that fill during the measured run are what an early stop could mistake for a leak."""
    out = tmp_path / "out"
    result = memsoak(
        "run", "--app", f"targets.corpus.{name}:app", "--locustfile", str(REPO / "locustfiles" / "corpus.py"),
        "--requests", "2500", "--warmup", "100", "--until-confident", "--out", str(out),
        env={"MEMSOAK_CORPUS_PATHS": "/"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "no-leak"
    assert report["requests"]["measured"] >= NO_LEAK_MIN_REQUESTS
