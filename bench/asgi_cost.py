"""What a FastAPI hunt costs against a Flask one: the same planted leak (a dict filled per request,
~500 B each: targets/corpus/async_dict.py on FastAPI under uvicorn, targets/corpus/dict_cache.py
on Flask under gevent), hunted by a whole `memsoak run` of 10,000 measured requests, and each
target's own req/s under wrk, untraced and traced at memsoak's default depth.

    .venv/bin/python bench/asgi_cost.py [--rounds 3] [--requests 10000] [--seconds 5]

Rounds alternate the order of the two frameworks. Medians are shown, with the FastAPI/Flask
ratio of each, and each run's verdict (both must be the leak at the planted line).
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

from bench._common import PYTHON, REPO, Server, machine_note, median, serve_command, table, wrk

APPS = {
    "Flask (gevent)": ("targets.corpus.dict_cache:app", "dict_cache.py:19"),
    "FastAPI (uvicorn)": ("targets.corpus.async_dict:app", "async_dict.py:24"),
}
# The servers wrk measures are told their interface: told from the app, a traced start imports
# an ASGI app twice under tracing (once to tell, once in uvicorn), which on a loaded machine
# outlasts the bench's wait for a ready line. The hunts start as `memsoak run` does (auto).
INTERFACE = {"Flask (gevent)": "wsgi", "FastAPI (uvicorn)": "asgi"}
LOCUSTFILE = REPO / "locustfiles" / "corpus.py"


def hunt(app: str, requests: int, out: Path) -> tuple[float, str]:
    """Wall time of a whole `memsoak run`, and what it found ("leak at file:line")."""
    started = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "memsoak", "run", "--app", app, "--locustfile", str(LOCUSTFILE),
         "--requests", str(requests), "--out", str(out)],
        cwd=REPO, check=True, capture_output=True, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text())
    top = report["suspects"][0] if report["suspects"] else None
    where = f"{Path(top['file']).name}:{top['line']}" if top else "-"
    return wall, f"{report['verdict']} at {where}"


def throughput(app: str, seconds: float, *serve_args: str) -> float:
    with Server(serve_command(app, *serve_args)) as server:
        wrk(server.url, seconds=2)
        return wrk(server.url, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    measures = ("hunt wall s", "untraced req/s", "traced req/s")
    results = {name: {m: [] for m in measures} for name in APPS}
    found: dict[str, set[str]] = {name: set() for name in APPS}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            names = list(APPS) if round_number % 2 == 0 else list(reversed(APPS))
            for name in names:
                app, _planted = APPS[name]
                wall, what = hunt(
                    app, args.requests, Path(scratch) / f"{round_number}-{len(found[name])}-{name[:5]}"
                )
                found[name].add(what)
                row = results[name]
                row["hunt wall s"].append(wall)
                interface = ("--interface", INTERFACE[name])
                row["untraced req/s"].append(throughput(app, args.seconds, "--no-trace", *interface))
                row["traced req/s"].append(throughput(app, args.seconds, *interface))
                done = ", ".join(f"{m} {row[m][-1]:,.1f}" for m in measures)
                print(f"round {round_number + 1}: {name}: {done}", file=sys.stderr, flush=True)
    flask, fastapi = (results[name] for name in APPS)
    rows = [
        [
            m,
            f"{median(flask[m]):,.1f}",
            f"{median(fastapi[m]):,.1f}",
            f"{median(fastapi[m]) / median(flask[m]):.2f}x",
        ]
        for m in measures
    ]
    rows.append(["traced / untraced", *(f"{median(r['traced req/s']) / median(r['untraced req/s']):.2f}x"
                                        for r in (flask, fastapi)), ""])  # fmt: skip
    print(table(["median of rounds", *APPS, "FastAPI / Flask"], rows))
    for name, (_app, planted) in APPS.items():
        verdicts = ", ".join(sorted(found[name]))
        ok = found[name] == {f"leak at {planted}"}
        print(f"{name}: {verdicts}{'' if ok else f'  (expected leak at {planted})'}")
    print(f"\n{args.rounds} rounds; hunts of {args.requests:,} measured requests (memsoak run's defaults), "
          f"wrk -t1 -c10 for {args.seconds:g} s; {machine_note()}")  # fmt: skip


if __name__ == "__main__":
    main()
