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
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    assert any("tracing on at the baseline (3 frames)" in e for e in report["events"])
    snapshots = sorted((out / "snapshots").glob("*.json"))
    docs = [json.loads(p.read_text()) for p in snapshots]
    assert [d["frames_limit"] for d in docs] == [3] * len(docs)
    # The warm-up's 100 requests pinned ~4 MB untraced: the baseline sees none of it...
    assert docs[0]["traced_bytes"] < 1_000_000
    # ...and the leak is still found, with its line.
    assert report["verdict"] == "leak"
    top = report["suspects"][0]
    assert top["file"].endswith("seed_leak/fetchuserdata.py") and top["line"] == 6
    # A target that outlives the run is left as untraced as it was found.
    assert agent.status()["tracing"] is False


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
