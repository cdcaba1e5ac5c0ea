"""Warm-up runs untraced; the plugin turns tracing on at the baseline and off again at the end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memsoak.agent_client import AgentClient
from memsoak.target import TargetProcess


def test_tracing_starts_at_the_baseline_at_the_targets_depth(
    start_target: Callable[..., TargetProcess], memsoak: Callable[..., Any], token: str, tmp_path: Path
) -> None:
    target = start_target("targets.seed_leak.app:app", frames=3, extra_args=("--no-trace",))
    agent = AgentClient(target.url, token, timeout=30)
    assert agent.status()["tracing"] is False

    out = tmp_path / "out"
    result = memsoak(
        "run", "--host", target.url, "--agent-token", token,
        "--requests", "400", "--warmup", "100", "--checkpoints", "3", "--out", str(out),
        "--frames", "3",  # a depth asked for: the whole series at it, no window after
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert any("tracing on at the baseline (3 frames)" in e for e in report["events"])
    assert report["parameters"]["frames"] == 3 and "window" not in report["requests"]
    snapshots = sorted((out / "snapshots").glob("*.json"))
    docs = [json.loads(p.read_text()) for p in snapshots]
    assert [d["frames_limit"] for d in docs] == [3] * len(docs)
    # The leak is still found, with its line, and its rate is not inflated by the list the
    # untraced warm-up grew (traced only once it reallocates: tracing starts before the baseline).
    assert report["verdict"] == "leak"
    top = report["suspects"][0]
    assert top["file"].endswith("seed_leak/fetchuserdata.py") and top["line"] == 6
    assert 30_000 < top["bytes_per_request"] < 50_000
    # A target that outlives the run is left as untraced as it was found.
    assert agent.status()["tracing"] is False


def test_the_default_series_is_traced_one_frame_deep_and_its_paths_at_the_targets_depth(
    start_target: Callable[..., TargetProcess], memsoak: Callable[..., Any], token: str, tmp_path: Path
) -> None:
    target = start_target("targets.seed_leak.app:app", frames=3, extra_args=("--no-trace",))
    out = tmp_path / "out"
    result = memsoak(
        "run", "--host", target.url, "--agent-token", token,
        "--requests", "400", "--warmup", "100", "--checkpoints", "3", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert any("tracing on at the baseline (1 frames;" in e for e in report["events"])
    docs = [json.loads(p.read_text()) for p in sorted((out / "snapshots").glob("*.json"))]
    assert [d["frames_limit"] for d in docs] == [1] * len(docs) and len(docs) == 4
    top = report["suspects"][0]
    assert top["file"].endswith("seed_leak/fetchuserdata.py") and top["line"] == 6
    assert 30_000 < top["bytes_per_request"] < 50_000
    assert len(top["traceback"]) == 3 and top["paths_seen"] == 1  # deepened to the target's depth
    assert report["requests"] == {"warmup": 100, "measured": 400, "failed": 0, "window": 100}
    assert [(p["requests"], p["frames"]) for p in report["phases"]] == [(100, 0), (400, 1), (100, 3)]
    assert report["parameters"]["frames"] == 1


def test_memsoak_run_starts_its_target_untraced(memsoak: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memsoak(
        "run", "--app", "targets.seed_fixed.app:app", "--requests", "300", "--warmup", "50",
        "--checkpoints", "2", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert any("warm-up ran untraced" in e for e in report["events"])
    assert report["verdict"] == "no-leak"


def test_watch_traces_a_leak_only_once_the_census_grows(memsoak: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memsoak("run", "--requests", "2500", "--warmup", "100", "--watch", "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "leak"
    top = report["suspects"][0]
    assert top["file"].endswith("seed_leak/fetchuserdata.py") and top["line"] == 6
    assert any(e.split(" ", 1)[1].startswith("watch: RSS grows") for e in report["events"])
    # Per-request bytes come from the traced window alone, not from what leaked before it.
    assert 30_000 < top["bytes_per_request"] < 60_000


def test_watch_never_traces_a_target_that_does_not_grow(memsoak: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = memsoak(
        "run", "--app", "targets.seed_fixed.app:app", "--requests", "1500", "--warmup", "100",
        "--watch", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "no-leak"
    assert not list((out / "snapshots").glob("*.json"))
    assert not any("tracing on" in e for e in report["events"])


def test_census_growth_needs_a_confident_slope() -> None:
    from analysis.thresholds import Thresholds
    from analysis.watch import CensusPoint, growth, quiet_verdict, watch_checkpoints

    flat = [CensusPoint(i * 100, 50_000_000 + (i % 2) * 4096, 100_000 + i % 3) for i in range(10)]
    assert growth(flat) is None
    assert quiet_verdict(flat, Thresholds()).kind == "no-leak"
    leaking = [CensusPoint(i * 100, 50_000_000 + i * 100 * 40_000, 100_000) for i in range(5)]
    assert growth(leaking[:4]) is None  # too few readings to trust
    assert growth(leaking) is not None and "RSS" in str(growth(leaking))
    small_objects = [CensusPoint(i * 100, 50_000_000, 100_000 + i * 300) for i in range(6)]
    assert "blocks" in str(growth(small_objects))
    points = watch_checkpoints(10_000)
    assert points[-1] == 10_000 and len(points) == 40
