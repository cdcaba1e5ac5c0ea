"""Target overhead: wrk's req/s against the fixed seed app on gevent's WSGI server, untraced,
under tracemalloc at several depths (memsoak's default marked) and under memray.

    .venv/bin/python bench/overhead.py [--rounds 3] [--seconds 5]

Each configuration gets a fresh server, a 2 s wrk warm-up, then a measured wrk run (10
keep-alive connections, 1 thread); configurations alternate, round after round, and the table
shows medians and ratios to the bare server (no agent, untraced).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PYTHON, REPO, Server, machine_note, median, serve_command, table, wrk

# Read, not imported: importing memsoak.serve would monkey-patch this process with gevent.
_SERVE = (REPO / "memsoak" / "serve.py").read_text()
DEFAULT_FRAMES = int(re.search(r"^DEFAULT_FRAMES = (\d+)", _SERVE, re.M)[1])  # type: ignore[index]

APP = "targets.seed_fixed.app:app"


def configurations(scratch: Path) -> dict[str, list[str]]:
    configs = {
        "bare gevent server, no agent": [PYTHON, str(REPO / "bench" / "_bare_server.py"), APP],
        "agent, tracing off (warm-up, watch mode)": serve_command(APP, "--no-trace"),
    }
    for frames in sorted({1, 5, 10, 25, DEFAULT_FRAMES}):
        mark = " (memsoak default)" if frames == DEFAULT_FRAMES else ""
        configs[f"tracemalloc, {frames} frame{'s' if frames > 1 else ''}{mark}"] = serve_command(
            APP, "--frames", str(frames)
        )
    memray = shutil.which("memray") or str(Path(PYTHON).with_name("memray"))
    if Path(memray).exists():
        for extra, label in (
            ([], "memray run"),
            (["--trace-python-allocators"], "memray run --trace-python-allocators"),
        ):
            configs[f"{label}, agent untraced"] = [
                memray, "run", "--quiet", "--force", *extra, "-o", str(scratch / f"{len(configs)}.bin"),
                "-m", "memsoak.serve", APP, "--bind", "127.0.0.1:0", "--no-trace",
            ]  # fmt: skip
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        configs = configurations(Path(scratch))
        results: dict[str, list[float]] = {name: [] for name in configs}
        for round_number in range(args.rounds):
            names = list(configs) if round_number % 2 == 0 else list(reversed(configs))
            for name in names:
                with Server(configs[name]) as server:
                    wrk(server.url, seconds=2)
                    rps = wrk(server.url, seconds=args.seconds)
                results[name].append(rps)
                print(f"round {round_number + 1}: {name}: {rps:,.0f} req/s", file=sys.stderr, flush=True)
    bare = median(results["bare gevent server, no agent"])
    rows = [
        [
            name,
            f"{median(values):,.0f}",
            f"{median(values) / bare:.2f}x",
            " ".join(f"{v:,.0f}" for v in values),
        ]
        for name, values in results.items()
    ]
    print(table(["target configuration", "median req/s (wrk)", "vs bare", "rounds"], rows))
    print(f"\n{args.rounds} rounds x {args.seconds:g} s, wrk -t1 -c10; {machine_note()}")


if __name__ == "__main__":
    main()
