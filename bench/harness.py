"""Harness overhead: `memsoak run` against raw Locust (the same kind of user, no plugin) on the
same no-leak target, with wrk's req/s on that target as the ceiling.

    .venv/bin/python bench/harness.py [--pairs 3] [--requests 10000] [--watch]

Every run gets a fresh target in the same state: the fixed seed app under `memsoak serve`, agent
installed and tracing on at memsoak's default depth. memsoak drives --warmup 200 then
--requests measured requests (its snapshots included); raw Locust drives the same total. Pairs
alternate which goes first; the ratio within each pair is the figure to quote (the machine's
speed drifts between pairs), next to the ratio of the medians. req/s is Locust's own total rate
in both; memsoak's is also shown with the target's snapshot pauses taken out, and the CPU the
driving side spent per request (steadier than req/s on a shared machine).

With --watch, the low-overhead soak mode instead: the target is served untraced (`--no-trace`) in
every run and memsoak runs with `--watch` (census only, tracing a window only once growth
shows), so the ratio is `memsoak run --watch` over raw Locust against the untraced target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PYTHON, REPO, TOKEN, Server, machine_note, median, serve_command, table, wrk

APP = "targets.seed_fixed.app:app"
WARMUP = 200
USERS = 10


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memsoak_rps(url: str, requests: int, scratch: Path, *extra: str) -> tuple[float, float, str, float]:
    out = scratch / f"memsoak-{len(list(scratch.iterdir()))}"
    cpu_before = _children_cpu_s()
    subprocess.run(
        [PYTHON, "-m", "memsoak", "run", "--host", url, "--agent-token", TOKEN,
         "--requests", str(requests), "--warmup", str(WARMUP), "--users", str(USERS),
         "--spawn-rate", str(USERS), "--out", str(out), *extra],
        cwd=REPO, check=True, capture_output=True, timeout=3600,
    )  # fmt: skip
    cpu = _children_cpu_s() - cpu_before
    report = json.loads((out / "report.json").read_text())
    stats = report["locust_stats"]
    rps = float(stats["rps"])
    elapsed = stats["requests"] / rps
    paused = sum(c["pause_s"] for c in report["checkpoints"])
    return rps, stats["requests"] / (elapsed - paused), str(report["verdict"]), cpu / stats["requests"]


def raw_rps(url: str, requests: int, scratch: Path) -> tuple[float, float]:
    stats_file = scratch / f"raw-{len(list(scratch.iterdir()))}.json"
    cpu_before = _children_cpu_s()
    subprocess.run(
        [PYTHON, "-m", "locust", "-f", str(REPO / "bench" / "raw_locustfile.py"), "--headless",
         "--only-summary", "-u", str(USERS), "-r", str(USERS), "--host", url, "-t", "3600s"],
        cwd=REPO, check=True, capture_output=True, timeout=3600,
        env={**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_STATS": str(stats_file)},
    )  # fmt: skip
    stats = json.loads(stats_file.read_text())
    return float(stats["rps"]), (_children_cpu_s() - cpu_before) / stats["requests"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--watch", action="store_true", help="untraced target, memsoak run --watch")
    args = parser.parse_args()
    serve_args, memsoak_args = (("--no-trace",), ("--watch",)) if args.watch else ((), ())
    verdicts: set[str] = set()
    memsoak: list[float] = []
    memsoak_unpaused: list[float] = []
    raw: list[float] = []
    # CPU the driving side spent per request (Locust, plus memsoak's conductor): unlike req/s,
    # it hardly moves with what else the machine is running.
    memsoak_cpu: list[float] = []
    raw_cpu: list[float] = []
    ceiling: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for pair in range(args.pairs):
            order = ("memsoak", "raw") if pair % 2 == 0 else ("raw", "memsoak")
            for which in order:
                with Server(serve_command(APP, *serve_args)) as target:
                    if which == "memsoak":
                        rps, unpaused, verdict, cpu = memsoak_rps(
                            target.url, args.requests, scratch, *memsoak_args
                        )
                        verdicts.add(verdict)
                        memsoak.append(rps)
                        memsoak_unpaused.append(unpaused)
                        memsoak_cpu.append(cpu)
                    else:
                        rps, cpu = raw_rps(target.url, args.requests + WARMUP, scratch)
                        raw.append(rps)
                        raw_cpu.append(cpu)
                print(f"pair {pair + 1}: {which} done", file=sys.stderr, flush=True)
            with Server(serve_command(APP, *serve_args)) as target:
                wrk(target.url, seconds=2)
                ceiling.append(wrk(target.url, seconds=5))
    base = median(raw)
    label = " ".join(["memsoak run", *memsoak_args])
    # Each pair ran side by side (alternating which went first); the machine's speed drifts
    # between pairs by more than the effect measured, which the ratio within a pair cancels.
    pair_ratios = [m / r for m, r in zip(memsoak, raw, strict=True)]
    rows = [
        ["raw Locust (FastHttpUser)", f"{base:,.0f}", "1.00", " ".join(f"{v:,.0f}" for v in raw)],
        [label, f"{median(memsoak):,.0f}", f"{median(memsoak) / base:.2f}",
         " ".join(f"{v:,.0f}" for v in memsoak)],
        [f"{label}, snapshot pauses taken out", f"{median(memsoak_unpaused):,.0f}",
         f"{median(memsoak_unpaused) / base:.2f}", " ".join(f"{v:,.0f}" for v in memsoak_unpaused)],
        ["wrk -c10 (ceiling)", f"{median(ceiling):,.0f}", f"{median(ceiling) / base:.2f}",
         " ".join(f"{v:,.0f}" for v in ceiling)],
    ]  # fmt: skip
    print(table(["driver", "median req/s", "vs raw Locust", "runs"], rows))
    print(
        f"\n{label} over raw Locust within each pair: median {median(pair_ratios):.2f} "
        f"(pairs: {' '.join(f'{ratio:.2f}' for ratio in pair_ratios)})"
    )
    raw_us, memsoak_us = median(raw_cpu) * 1e6, median(memsoak_cpu) * 1e6
    runs = " / ".join(" ".join(f"{v * 1e6:,.0f}" for v in cpu) for cpu in (raw_cpu, memsoak_cpu))
    print(
        f"\ndriver CPU per request (Locust, and memsoak's conductor): raw Locust {raw_us:,.0f} µs, "
        f"{label} {memsoak_us:,.0f} µs ({memsoak_us / raw_us:.2f}x; runs: {runs})"
    )
    target_state = "untraced (--no-trace)" if args.watch else "traced at memsoak's default depth"
    print(
        f"\n{args.pairs} alternating pairs, {args.requests:,} requests (+{WARMUP} warm-up), {USERS} users, "
        f"target {target_state}; "
        f"memsoak's verdicts: {', '.join(sorted(verdicts))}; {machine_note()}"
    )


if __name__ == "__main__":
    main()
