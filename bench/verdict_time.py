"""Time to a verdict: the wall time of a whole `memsoak run` on the seed leak (start-up, warm-up,
10,000 measured requests, snapshots, every report), next to `ab -n 10000 -c 10` against the same
target alone (served by `memsoak serve --no-trace`: the same server, nothing traced), and
`memsoak run --until-confident` with the same cap.

    .venv/bin/python bench/verdict_time.py [--rounds 3] [--requests 10000]

Rounds alternate the order. Medians are shown, with where memsoak's time went: the target's
pauses for snapshots, and the rest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PYTHON, REPO, Server, machine_note, median, need, serve_command, table

APP = "targets.seed_leak.app:app"


def memsoak_run(requests: int, out: Path, *extra: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "memsoak", "run", "--app", APP, "--requests", str(requests),
         "--out", str(out), *extra],
        cwd=REPO, check=True, capture_output=True, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    return wall, json.loads((out / "report.json").read_text())


def ab_run(requests: int) -> float:
    with Server(serve_command(APP, "--no-trace")) as target:
        started = time.perf_counter()
        subprocess.run(
            [need("ab", "apache2-utils"), "-q", "-n", str(requests), "-c", "10", target.url + "/"],
            check=True, capture_output=True, timeout=3600,
        )  # fmt: skip
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"ab": [], "memsoak": [], "confident": []}
    pauses: dict[str, list[float]] = {"memsoak": [], "confident": []}
    measured: list[int] = []
    verdicts: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            order = ["ab", "memsoak", "confident"]
            if round_number % 2:
                order.reverse()
            for which in order:
                if which == "ab":
                    walls["ab"].append(ab_run(args.requests))
                else:
                    extra = ("--until-confident",) if which == "confident" else ()
                    out = Path(tmp) / f"{which}-{round_number}"
                    wall, report = memsoak_run(args.requests, out, *extra)
                    walls[which].append(wall)
                    pauses[which].append(sum(c["pause_s"] for c in report["checkpoints"]))  # type: ignore[attr-defined]
                    top = report["suspects"][0] if report["suspects"] else {}  # type: ignore[index]
                    verdicts.add(f"{report['verdict']} {Path(str(top.get('file'))).name}:{top.get('line')}")
                    if which == "confident":
                        measured.append(report["requests"]["measured"])  # type: ignore[index]
                print(
                    f"round {round_number + 1}: {which} {walls[which][-1]:.1f} s", file=sys.stderr, flush=True
                )
    ab = median(walls["ab"])
    rows = [
        [
            f"ab -n {args.requests} -c 10, target alone",
            f"{ab:.1f}",
            "1.00",
            "",
            " ".join(f"{w:.1f}" for w in walls["ab"]),
        ]
    ]
    for key, label in (
        ("memsoak", f"memsoak run --requests {args.requests}"),
        ("confident", f"memsoak run --requests {args.requests} --until-confident"),
    ):
        wall = median(walls[key])
        rows.append(
            [
                label,
                f"{wall:.1f}",
                f"{wall / ab:.2f}",
                f"{median(pauses[key]):.1f}",
                " ".join(f"{w:.1f}" for w in walls[key]),
            ]
        )
    print(table(["run", "median wall s", "vs ab", "target paused for snapshots, s", "rounds"], rows))
    print(
        f"\nverdicts: {', '.join(sorted(verdicts))}; --until-confident stopped after "
        f"{', '.join(str(m) for m in measured)} measured requests; {args.rounds} rounds; {machine_note()}"
    )


if __name__ == "__main__":
    main()
