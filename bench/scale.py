"""Scale figures for memsoak (a benchmark, not a test).

1. Throughput: req/s with 1, 2 and 4 Locust workers (`memsoak run --workers N`) against a fast
   no-leak target (bench/fast_app.py), measured from the target's own request counter (agent
   status) over the middle of the measured requests, so spawning, warm-up and snapshot pauses at
   the ends are left out.
2. Harness memory: the peak RSS of memsoak's own processes (the `memsoak run` process, the Locust
   master and its workers; the target excluded) over one long run, default 1,000,000 requests,
   with the RSS at 10%, 50% and 100% of the requests to show it does not grow with the count.

    .venv/bin/python bench/scale.py                      # all of it, 1,000,000 requests
    .venv/bin/python bench/scale.py --soak-requests 100000 --skip-throughput

It prints what it ran (counts included) and writes the figures as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from memsoak.agent_client import AgentClient, AgentError  # noqa: E402

APP = "bench.fast_app:app"


@dataclass
class Run:
    label: str
    command: list[str]
    requests: int
    exit_code: int = -1
    wall_s: float = 0.0
    rps_mid: float = 0.0  # target-side requests/s over the middle of the measured requests
    harness_peak_rss: int = 0  # peak of the sum over memsoak's own processes
    harness_peak_rss_by_process: dict[str, int] = field(default_factory=dict)
    harness_rss_at: dict[str, int] = field(default_factory=dict)  # "10%" -> summed RSS then
    verdict: str = ""


TARGET_MARKS = ("memsoak.serve", "memsoak.gunicorn_conf")


def _harness_processes(root: psutil.Process) -> list[psutil.Process]:
    """memsoak run and its Locust processes; the target (memsoak.serve or gunicorn, and
    gunicorn's workers) is not the harness."""
    try:
        tree = root.children(recursive=False)
    except psutil.NoSuchProcess:
        return []
    harness = [root]
    for child in tree:
        try:
            if any(mark in part for part in child.cmdline() for mark in TARGET_MARKS):
                continue
            harness += [child, *child.children(recursive=True)]
        except psutil.Error:
            continue
    return harness


def _role(process: psutil.Process) -> str:
    try:
        cmd = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    if " memsoak run " in f" {cmd} ".replace(" -m memsoak run ", " memsoak run "):
        return "memsoak-run"
    if "--worker " in f"{cmd} ":
        return "locust-worker"
    if "locust" in cmd:
        return "locust-master" if "--master" in cmd else "locust"
    return "memsoak-run"


def measure(label: str, args: list[str], requests: int, warmup: int, token: str) -> Run:
    out = Path(tempfile.mkdtemp(prefix=f"memsoak-bench-{label}-"))
    command = [
        sys.executable, "-m", "memsoak", "run", "--app", APP, "--app-dir", str(REPO),
        "--agent-token", token, "--requests", str(requests), "--warmup", str(warmup),
        "--checkpoints", "1", "--frames", "1", "--out", str(out), *args,
    ]  # fmt: skip
    run = Run(label, command, requests)
    print(f"bench: {label}: {' '.join(command[2:])}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(process.pid)
    assert process.stdout is not None
    first = process.stdout.readline()  # "memsoak: target URL; ..." once the target is up
    print(first, end="", flush=True)
    url = first.split("target ", 1)[1].split(";")[0] if "target " in first else ""
    agent = AgentClient(url, token, timeout=5) if url else None
    points: list[tuple[float, int]] = []  # (time, requests served by the target)
    peaks: dict[int, tuple[str, int]] = {}
    marks = {"10%": 0.1, "50%": 0.5, "100%": 1.0}
    while process.poll() is None:
        time.sleep(0.5)
        served = None
        if agent is not None:
            try:
                status = agent.status()
                served = int(status["requests_served"])
            except AgentError:
                pass
        harness = _harness_processes(root)
        rss_sum = 0
        for p in harness:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            rss_sum += rss
            role, peak = peaks.get(p.pid, (_role(p), 0))
            peaks[p.pid] = (role, max(peak, rss))
        run.harness_peak_rss = max(run.harness_peak_rss, rss_sum)
        if served is not None:
            points.append((time.monotonic(), served))
            for mark, share in marks.items():
                if mark not in run.harness_rss_at and served >= warmup + share * requests:
                    run.harness_rss_at[mark] = rss_sum
    output = first + process.stdout.read()
    run.exit_code = process.returncode
    run.wall_s = round(time.monotonic() - started, 1)
    for role, peak in peaks.values():
        run.harness_peak_rss_by_process[role] = max(run.harness_peak_rss_by_process.get(role, 0), peak)
    run.rps_mid = round(_middle_rate(points, warmup + 0.2 * requests, warmup + 0.8 * requests), 1)
    report = out / "report.json"
    run.verdict = json.loads(report.read_text())["verdict"] if report.exists() else "no report"
    if run.exit_code != 0:
        print(output[-2000:], file=sys.stderr)
    print(
        f"bench: {label}: exit {run.exit_code}, {run.wall_s} s, {run.rps_mid:,.0f} req/s (middle 60%), "
        f"verdict {run.verdict}, harness peak RSS {run.harness_peak_rss / 2**20:.1f} MiB, "
        f"at 10/50/100%: {[round(v / 2**20, 1) for v in run.harness_rss_at.values()]} MiB; by process "
        f"{ {k: round(v / 2**20, 1) for k, v in run.harness_peak_rss_by_process.items()} } MiB",
        flush=True,
    )
    return run


def _middle_rate(points: list[tuple[float, int]], low: float, high: float) -> float:
    inside = [(t, n) for t, n in points if low <= n <= high]
    if len(inside) < 2 or inside[-1][0] == inside[0][0]:
        return 0.0
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60_000, help="measured requests per throughput run")
    parser.add_argument("--workers", default="1,2,4", help="Locust worker counts to compare")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument(
        "--soak-requests", type=int, default=1_000_000, help="requests of the harness-memory run"
    )
    parser.add_argument("--soak-workers", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--target-args", default="", help="extra memsoak run options for the target, e.g. "
                        "'--server gunicorn --server-workers 4'")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    token = secrets.token_hex(16)
    extra = args.target_args.split()
    common = ["--users", str(args.users), "--spawn-rate", "1000", *extra]
    runs: list[Run] = []
    print(f"bench: {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    if not args.skip_throughput:
        for n in (int(w) for w in args.workers.split(",")):
            runs.append(measure(f"workers-{n}", ["--workers", str(n), *common], args.requests, 1000, token))
    if not args.skip_soak:
        runs.append(
            measure(
                f"soak-{args.soak_requests}",
                ["--workers", str(args.soak_workers), "--max-time", "86400", *common],
                args.soak_requests,
                1000,
                token,
            )
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    print("\n| run | requests | req/s (middle) | harness peak RSS | RSS at 10% / 50% / 100% | verdict |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for r in runs:
        at = " / ".join(f"{v / 2**20:.0f}" for v in r.harness_rss_at.values())
        print(
            f"| {r.label} | {r.requests:,} | {r.rps_mid:,.0f} | {r.harness_peak_rss / 2**20:.0f} MiB "
            f"| {at} MiB | {r.verdict} |"
        )
    return 0 if all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
