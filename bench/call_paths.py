"""What watching call paths costs the target: wrk's req/s against the seed leak traced one frame
deep (as an `--until-confident` series leaves it), with no watch, with the agent's C hook
(`memsoak/agent/_callhook.c`) and with the `sys.setprofile` hook it falls back to, the three
side by side in each round (rotating which goes first).

    .venv/bin/python bench/call_paths.py [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PYTHON, TOKEN, Server, machine_note, median, table, wrk
from memsoak.agent_client import AgentClient

APP = "targets.seed_leak.app:app"
LINE = (str(Path(__file__).resolve().parent.parent / "targets" / "seed_leak" / "fetchuserdata.py"), 6)
# The target as `memsoak serve` runs it, but with the C hook's import refused: the agent then
# watches with `sys.setprofile`, as it does where the extension is not built.
WITHOUT_C_HOOK = (
    "import runpy, sys; sys.modules['memsoak.agent._callhook'] = None; "
    "sys.argv[0] = 'memsoak.serve'; runpy.run_module('memsoak.serve', run_name='__main__')"
)


def measure(hook: str, seconds: float) -> float:
    args = [APP, "--bind", "127.0.0.1:0", "--frames", "1"]
    start = ["-c", WITHOUT_C_HOOK] if hook == "setprofile" else ["-m", "memsoak.serve"]
    command = [PYTHON, *start, *args]
    with Server(command) as target:
        wrk(target.url, seconds=1)  # the same warm-up for all: the list grows alike
        if hook != "none":
            agent = AgentClient(target.url, TOKEN, timeout=60)
            agent.watch_callers([LINE], depth=10, max_seconds=seconds + 60)
        rps = wrk(target.url, seconds=seconds)
        if hook != "none":
            calls = agent.callers()["lines"][0]["calls"]
            assert calls > 0, "the watch saw no call of the line"
        return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    hooks = ["none", "c", "setprofile"]
    results: dict[str, list[float]] = {hook: [] for hook in hooks}
    for round_number in range(args.rounds):
        shift = round_number % len(hooks)
        for hook in hooks[shift:] + hooks[:shift]:
            results[hook].append(measure(hook, args.seconds))
            rps = results[hook][-1]
            print(f"round {round_number + 1}: {hook} {rps:.0f} req/s", file=sys.stderr, flush=True)
    base = median(results["none"])
    labels = {"none": "no watch", "c": "C hook (_callhook.c)", "setprofile": "sys.setprofile hook"}
    rows = []
    for hook in hooks:
        within = [r / b for r, b in zip(results[hook], results["none"], strict=True)]
        rows.append(
            [
                labels[hook],
                f"{median(results[hook]):.0f}",
                f"{median(results[hook]) / base:.2f}",
                f"{median(within):.2f}",
                " ".join(f"{r:.0f}" for r in results[hook]),
            ]
        )
    print(table(["watch", "median req/s", "vs no watch", "within rounds", "rounds"], rows))
    print(
        f"\nseed leak traced 1 frame deep, wrk -c10 for {args.seconds:g} s; {args.rounds} rounds; "
        + machine_note()
    )


if __name__ == "__main__":
    main()
