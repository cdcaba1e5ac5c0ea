"""Time to a verdict: the wall time of a whole `memsoak run` on the seed leak (start-up, warm-up,
10,000 measured requests, snapshots, every report), next to `ab -n 10000 -c 10` against the same
target alone: served by `flask run` (the seed write-up's method, its load alone), by `memsoak
serve --no-trace` (memsoak's server, nothing traced) and by `memsoak serve` (traced at 10
frames, which is what the job by hand needs: ab's load, then a snapshot route); and `memsoak run
--until-confident` and `memsoak run --watch --until-confident` with the same cap.

    .venv/bin/python bench/verdict_time.py [--rounds 3] [--requests 10000]

Rounds alternate the order. Medians are shown, with where memsoak's time went: the target's
pauses for snapshots, and the rest.
"""

from __future__ import annotations

import argparse
import json
import socket
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


def _ab(requests: int, url: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [need("ab", "apache2-utils"), "-q", "-n", str(requests), "-c", "10", url + "/"],
        check=True, capture_output=True, timeout=3600,
    )  # fmt: skip
    return time.perf_counter() - started


def ab_run(requests: int, *serve_args: str) -> float:
    with Server(serve_command(APP, *serve_args)) as target:
        return _ab(requests, target.url)


def ab_flask_run(requests: int) -> float:
    """ab against `flask run` (Werkzeug's development server), as the seed write-up did."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [PYTHON, "-m", "flask", "--app", APP, "run", "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # ready once it accepts a connection (no request: the app leaks on each)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"flask run did not start: {' '.join(command)}") from None
                time.sleep(0.1)
        return _ab(requests, f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(15)


VARIANTS = {
    "memsoak": (),
    "deep": ("--frames", "10"),  # the series traced 10 frames deep throughout: the old default
    "confident": ("--until-confident",),
    "watch": ("--watch", "--until-confident"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--no-traced-ab", action="store_true", help="skip ab on the traced app")
    args = parser.parse_args()
    baselines = ["ab-flask", "ab"] if args.no_traced_ab else ["ab-flask", "ab", "ab-traced"]
    walls: dict[str, list[float]] = {**{b: [] for b in baselines}, **{v: [] for v in args.variants}}
    pauses: dict[str, list[float]] = {v: [] for v in args.variants}
    measured: dict[str, list[int]] = {v: [] for v in args.variants}
    verdicts: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            order = [*baselines, *args.variants]
            if round_number % 2:
                order.reverse()
            for which in order:
                if which == "ab-flask":
                    walls["ab-flask"].append(ab_flask_run(args.requests))
                elif which == "ab":
                    walls["ab"].append(ab_run(args.requests, "--no-trace"))
                elif which == "ab-traced":
                    walls["ab-traced"].append(ab_run(args.requests))
                else:
                    out = Path(tmp) / f"{which}-{round_number}"
                    wall, report = memsoak_run(args.requests, out, *VARIANTS[which])
                    walls[which].append(wall)
                    pauses[which].append(sum(c["pause_s"] for c in report["checkpoints"]))  # type: ignore[attr-defined]
                    top = report["suspects"][0] if report["suspects"] else {}  # type: ignore[index]
                    verdicts.add(f"{report['verdict']} {Path(str(top.get('file'))).name}:{top.get('line')}")
                    requests = report["requests"]  # type: ignore[index]
                    measured[which].append(sum(requests.get(k, 0) for k in ("warmup", "measured", "window")))
                print(
                    f"round {round_number + 1}: {which} {walls[which][-1]:.1f} s", file=sys.stderr, flush=True
                )
    ab = median(walls["ab"])
    ab_traced = median(walls["ab-traced"]) if "ab-traced" in walls else None

    def vs_traced(wall: float) -> str:
        return "" if ab_traced is None else f"{wall / ab_traced:.2f}"

    rows = [
        [
            f"ab -n {args.requests} -c 10, target alone{suffix}",
            f"{median(walls[key]):.1f}",
            f"{median(walls[key]) / ab:.2f}",
            vs_traced(median(walls[key])),
            "",
            "",
            " ".join(f"{w:.1f}" for w in walls[key]),
        ]
        for key, suffix in (
            ("ab-flask", ", flask run"),
            ("ab", ", untraced"),
            ("ab-traced", ", traced (10 frames)"),
        )
        if key in walls
    ]
    for key in args.variants:
        wall = median(walls[key])
        label = " ".join(["memsoak run --requests", str(args.requests), *VARIANTS[key]])
        rows.append(
            [
                label,
                f"{wall:.1f}",
                f"{wall / ab:.2f}",
                vs_traced(wall),
                f"{median(pauses[key]):.1f}",
                f"{median(measured[key]):,.0f}",
                " ".join(f"{w:.1f}" for w in walls[key]),
            ]
        )
    print(
        table(
            [
                "run",
                "median wall s",
                "vs ab untraced",
                "vs ab traced",
                "snapshot pauses, s",
                "requests sent",
                "rounds",
            ],
            rows,
        )
    )
    # Each round ran everything side by side (alternating the order); the machine's speed drifts
    # between rounds by more than some of the effects measured, which a ratio within a round cancels.
    for key in args.variants:
        for base, name in (("ab-flask", "ab on flask run (the load alone)"), ("ab", "ab untraced")):
            ratios = [wall / b for wall, b in zip(walls[key], walls[base], strict=True)]
            print(
                f"\n{' '.join(['memsoak run', *VARIANTS[key]])} over {name} within each round: median "
                f"{median(ratios):.2f} (rounds: {' '.join(f'{r:.2f}' for r in ratios)})"
            )
    print(f"\nverdicts: {', '.join(sorted(verdicts))}; {args.rounds} rounds; {machine_note()}")


if __name__ == "__main__":
    main()
