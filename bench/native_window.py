"""What the native window costs the target: wrk's req/s against a target traced as a run leaves it
(tracemalloc on, at the target's depth), without and with memray's tracker recording native stacks
(`memsoak/agent/native.py`), side by side in each round (rotating which goes first).

    .venv/bin/python bench/native_window.py [--rounds 5] [--seconds 3] [--app MODULE:ATTR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.native import read_native
from bench._common import PYTHON, TOKEN, Server, machine_note, median, table, wrk
from memsoak.agent_client import AgentClient

APP = "targets.seed_fixed.app:app"


def measure(app: str, window: bool, seconds: float) -> float:
    with Server([PYTHON, "-m", "memsoak.serve", app, "--bind", "127.0.0.1:0"]) as target:
        wrk(target.url, seconds=1)  # the same warm-up for both
        agent = AgentClient(target.url, TOKEN, timeout=120)
        if window:
            agent.start_native(max_seconds=seconds + 60)
        rps = wrk(target.url, seconds=seconds)
        if window:
            found = read_native(agent.stop_native())
            assert found is not None and found.requests > 0, "the window recorded no request"
        return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--app", default=APP)
    args = parser.parse_args()
    modes = [False, True]
    results: dict[bool, list[float]] = {mode: [] for mode in modes}
    for round_number in range(args.rounds):
        shift = round_number % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            results[mode].append(measure(args.app, mode, args.seconds))
            label = "window" if mode else "traced"
            print(
                f"round {round_number + 1}: {label} {results[mode][-1]:.0f} req/s",
                file=sys.stderr,
                flush=True,
            )
    base = median(results[False])
    rows = []
    for mode, label in ((False, "traced (tracemalloc)"), (True, "traced + native window (memray)")):
        within = [r / b for r, b in zip(results[mode], results[False], strict=True)]
        rows.append(
            [
                label,
                f"{median(results[mode]):.0f}",
                f"{median(results[mode]) / base:.2f}",
                f"{median(within):.2f}",
                " ".join(f"{r:.0f}" for r in results[mode]),
            ]
        )
    print(table(["target", "median req/s", "vs traced", "within rounds", "rounds"], rows))
    print(f"\n{args.app}, wrk -c10 for {args.seconds:g} s; {args.rounds} rounds; " + machine_note())


if __name__ == "__main__":
    main()
