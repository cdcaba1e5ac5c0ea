"""Snapshot diff: memsoak's grouping (in the target) plus its diff (in analysis), against stdlib's
`tracemalloc.Snapshot.compare_to`, on the same two sets of about 2.8 million traces.

    .venv/bin/python bench/diff.py [--rounds 3] [--items 300000] [--frames 25]

The process keeps `--items` small lists and dicts, allocated along a few hundred call paths
(so there are thousands of distinct tracebacks, as in a real app), takes tracemalloc's raw
traces, keeps 5% more, and takes them again. memsoak's side is what a run does: group each set
of traces as the agent does (its C extension when built, under tracemalloc, as in the target),
load both through the wire format, diff them. stdlib's side is `compare_to` on `Snapshot`
objects over the same traces, with tracing off (as a harness would run it). Rounds alternate;
medians are shown; the last line says which grouping ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.diff import diff_sites
from analysis.snapshot_io import snapshot_from_dict
from bench._common import machine_note, median, table
from memsoak.agent import tracing

PATHS = 200


def _call_paths() -> dict[str, Any]:
    """PATHS functions calling each other to a varying depth before allocating."""
    source = "".join(
        f"def f{k}(n, depth):\n"
        f"    if depth == 0:\n"
        f"        return [{{'n': n * 1000}}, [n * 1000, n * 1001]]\n"
        f"    if n % 2:\n"
        f"        return f{(k * 7 + 3) % PATHS}(n, depth - 1)\n"
        f"    return f{(k * 13 + 1) % PATHS}(n // 2, depth - 1)\n"
        for k in range(PATHS)
    )
    # Written out and imported like any module (no exec): tracebacks then name a real file.
    directory = Path(tempfile.mkdtemp(prefix="memsoak-bench-"))
    (directory / "bench_call_paths.py").write_text(f"PATHS = {PATHS}\n" + source)
    spec = importlib.util.spec_from_file_location("bench_call_paths", directory / "bench_call_paths.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


def _doc(traces: list[Any], frames_limit: int) -> dict[str, Any]:
    frames, sites = tracing.sites_from_traces(traces, min_site_bytes=0)
    return {
        "format": "memsoak-snapshot", "version": 1, "pid": 0, "taken_at": 0.0, "duration_s": 0.0,
        "rss_bytes": 0, "traced_bytes": 0, "tracemalloc_overhead_bytes": 0,
        "frames_limit": frames_limit, "frames": frames, "sites": sites,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--frames", type=int, default=25)
    args = parser.parse_args()
    paths = _call_paths()
    tracemalloc.start(args.frames)
    kept = [paths[f"f{i % PATHS}"](i, i % 9) for i in range(args.items)]
    before = tracemalloc._get_traces()
    kept += [paths[f"f{i % PATHS}"](i, i % 9) for i in range(args.items // 20)]
    after = tracemalloc._get_traces()
    print(f"{len(before):,} and {len(after):,} traces", file=sys.stderr)

    keys = ("group", "load", "diff-tb", "diff-line", "std-tb", "std-line")
    times: dict[str, list[float]] = {k: [] for k in keys}
    for _round in range(args.rounds):
        # memsoak, traced as in the target
        if not tracemalloc.is_tracing():
            tracemalloc.start(args.frames)  # traces are gone, but the raw lists are kept
        started = time.perf_counter()
        docs = [_doc(before, args.frames), _doc(after, args.frames)]
        times["group"].append(time.perf_counter() - started)
        tracemalloc.stop()
        started = time.perf_counter()
        old, new = (snapshot_from_dict(d).sites for d in docs)
        times["load"].append(time.perf_counter() - started)
        for key, group_by in (("diff-tb", "traceback"), ("diff-line", "line")):
            started = time.perf_counter()
            memsoak_diff = diff_sites(old, new, group_by)  # type: ignore[arg-type]
            times[key].append(time.perf_counter() - started)
        # stdlib, untraced
        snapshots = [tracemalloc.Snapshot(before, args.frames), tracemalloc.Snapshot(after, args.frames)]
        for key, group_by in (("std-tb", "traceback"), ("std-line", "lineno")):
            started = time.perf_counter()
            stdlib_diff = snapshots[1].compare_to(snapshots[0], group_by)
            times[key].append(time.perf_counter() - started)
        assert len(memsoak_diff) == len(stdlib_diff)
        del snapshots, stdlib_diff
    assert kept

    m = {k: median(v) for k, v in times.items()}
    grouping = "C extension" if tracing._grouping is not None else "pure-Python fallback (no C extension)"
    ours_tb = m["group"] + m["load"] + m["diff-tb"]
    ours_line = m["group"] + m["load"] + m["diff-line"]
    rows = [
        ["by traceback", f"{m['std-tb']:.2f}", f"{m['group']:.2f} + {m['load']:.3f} + {m['diff-tb']:.3f}",
         f"{ours_tb:.2f}", f"{m['std-tb'] / ours_tb:.1f}x"],
        ["by line", f"{m['std-line']:.2f}", f"{m['group']:.2f} + {m['load']:.3f} + {m['diff-line']:.3f}",
         f"{ours_line:.2f}", f"{m['std-line'] / ours_line:.1f}x"],
    ]  # fmt: skip
    print(
        table(
            ["diff", "stdlib compare_to (s)", "memsoak: group + load + diff (s)", "memsoak (s)", "speed-up"],
            rows,
        )
    )
    print(
        f"\n{len(after):,} traces, {len(new):,} distinct tracebacks at {args.frames} frames; "
        f"medians of {args.rounds} rounds; grouping: {grouping}; {machine_note()}"
    )


if __name__ == "__main__":
    main()
