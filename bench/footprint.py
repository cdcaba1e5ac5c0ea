"""Footprint benchmark: does memsoak itself stay flat over a long run?

Runs `memsoak run` against the fixed seed target (no leak) for N requests and, once a second,
reads the resident memory of the three processes involved with psutil: the `memsoak run`
conductor, its Locust child (the plugin lives there) and the target. Afterwards it reads what
the agent reported at each snapshot: the target's RSS, its traced memory, tracemalloc's own
bookkeeping, and the live memory allocated by the agent's own code in the target (sites whose
traceback passes through memsoak/agent), which is what the agent keeps between snapshots.

    .venv/bin/python bench/footprint.py --requests 1000000 --out /tmp/footprint

Prints one JSON document (also written to OUT/footprint.json). "growth_after_first_10pct" is
the difference between the median of the last 10 % of the samples and the median of the
samples between 10 % and 20 % of the run: start-up and warm-up are excluded, noise is damped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


def _rss(process: psutil.Process | None) -> int | None:
    if process is None:
        return None
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return None


def _children(root: psutil.Process) -> tuple[psutil.Process | None, psutil.Process | None]:
    """(locust, target) among the conductor's children, told apart by their command lines."""
    locust = target = None
    try:
        for child in root.children(recursive=False):
            cmdline = " ".join(child.cmdline())
            if "memsoak.serve" in cmdline:
                target = child
            elif "locust" in cmdline:
                locust = child
    except psutil.Error:
        pass
    return locust, target


def _growth(series: list[tuple[float, int]]) -> dict[str, int | None]:
    values = [v for _t, v in series]
    n = len(values)
    if n < 10:
        return {"first": values[0] if values else None, "last": values[-1] if values else None,
                "growth_after_first_10pct": None}  # fmt: skip
    early = statistics.median(values[n // 10 : max(n // 10 + 1, n // 5)])
    late = statistics.median(values[n - max(1, n // 10) :])
    return {
        "first": values[0],
        "early_median": int(early),
        "last_median": int(late),
        "max": max(values),
        "growth_after_first_10pct": int(late - early),
    }


def _agent_bytes(snapshot: dict[str, object]) -> int:
    """Live bytes in the target allocated under the agent's own code (memsoak/agent/)."""
    frames = snapshot["frames"]
    assert isinstance(frames, list)
    agent_frames = {i for i, row in enumerate(frames) if "/memsoak/agent/" in str(row[0])}
    sites = snapshot["sites"]
    assert isinstance(sites, list)
    return sum(size for size, _count, indexes in sites if agent_frames.intersection(indexes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--app", default="targets.seed_fixed.app:app")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-time", type=int, default=7200)
    parser.add_argument(
        "--frames", type=int, help="traceback depth traced in the target (memsoak's default if unset)"
    )
    args = parser.parse_args(argv)

    out: Path = args.out
    command = [
        sys.executable, "-m", "memsoak", "run",
        "--app", args.app, "--requests", str(args.requests), "--warmup", str(args.warmup),
        "--checkpoints", str(args.checkpoints), "--users", str(args.users),
        "--max-time", str(args.max_time), "--out", str(out / "run"),
        *(["--frames", str(args.frames)] if args.frames else []),
    ]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(out / "memsoak.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    root = psutil.Process(process.pid)
    series: dict[str, list[tuple[float, int]]] = {"conductor": [], "locust": [], "target": []}
    try:
        while process.poll() is None and time.monotonic() - started < args.max_time + 120:
            locust, target = _children(root)
            now = round(time.monotonic() - started, 1)
            for name, proc in (("conductor", root), ("locust", locust), ("target", target)):
                rss = _rss(proc)
                if rss is not None:
                    series[name].append((now, rss))
            time.sleep(1.0)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    elapsed = time.monotonic() - started

    if not (out / "run" / "report.json").exists():
        print(f"no report: the run failed (exit {process.returncode}); see {out / 'memsoak.log'}")
        return 1
    report = json.loads((out / "run" / "report.json").read_text())
    snapshots = []
    for path in sorted((out / "run" / "snapshots").glob("*.json")):
        doc = json.loads(path.read_bytes())
        snapshots.append(
            {
                "file": path.name,
                "requests": doc["requests"],
                "rss_bytes": doc["rss_bytes"],
                "traced_bytes": doc["traced_bytes"],
                "tracemalloc_overhead_bytes": doc["tracemalloc_overhead_bytes"],
                "agent_live_bytes": _agent_bytes(doc),
                "sites": len(doc["sites"]),
                "frames": len(doc["frames"]),
                "document_bytes": path.stat().st_size,
                "pause_s": round(doc["duration_s"], 3),
            }
        )
    result = {
        "command": " ".join(command),
        "exit_code": process.returncode,
        "elapsed_s": round(elapsed, 1),
        "requests": report["requests"],
        "verdict": report["verdict"],
        "rps": report.get("locust_stats", {}).get("rps"),
        "rss_series_samples": {name: len(points) for name, points in series.items()},
        "rss": {name: _growth(points) for name, points in series.items()},
        "snapshots": snapshots,
        "series": series,
    }
    (out / "footprint.json").write_text(json.dumps(result, indent=1))
    shown = {k: v for k, v in result.items() if k != "series"}
    print(json.dumps(shown, indent=1))
    return 0 if process.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
