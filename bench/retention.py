"""The retention search against the size of the live heap: does it scale with the objects alive?

    .venv/bin/python bench/retention.py [--rounds 3] [--sizes 250000,500000,1000000,2000000] [--frames 10]

Each size builds, under tracemalloc (as in a target), a heap of that many live tracked objects
(small dicts, lists and instances along a few call paths, each holding a string) plus the three
kinds of leak: a registry of 3,000 instances in a class attribute (reachable), 2,000 objects a
C-API reference keeps alive with nothing referring to them (unreachable), and 2,000 blocks taken
from PyObject_Malloc with no object (raw; tests/cext/rawleak.c). It then runs the agent's search
(memsoak.agent.retention.find_retention) on the three sites, in this process, and checks it
answered each kind. Sizes alternate within each round; medians are shown, with the time per live
object and each size's time and heap against the smallest's: a search that scales with the heap
has the two ratios equal.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine_note, median, table
from memsoak.agent.retention import find_retention
from targets.cext import load

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_decref = ctypes.pythonapi.Py_DecRef
_decref.argtypes = [ctypes.py_object]
rawleak = load("rawleak")


class Item:
    def __init__(self, n: int) -> None:
        self.n = n
        self.label = f"item-{n}"


class Registry:
    items: ClassVar[dict[int, Item]] = {}


def _background(count: int) -> list[Any]:
    kept: list[Any] = []
    for n in range(count):
        kind = n % 3
        if kind == 0:
            kept.append({"n": n, "s": f"d{n}"})
        elif kind == 1:
            kept.append([n, f"l{n}"])
        else:
            kept.append(Item(n))
    return kept


def _register(n: int) -> None:
    Registry.items[n] = Item(n)  # kind: reachable


def _leak(n: int) -> int:
    item = Item(n)  # kind: unreachable
    _incref(item)
    return id(item)


def _raw() -> None:
    rawleak.leak(512)  # kind: raw


def _site(snapshot: tracemalloc.Snapshot, function: Any, marker: str) -> dict[str, Any]:
    code = function.__code__
    lines = Path(code.co_filename).read_text(encoding="utf-8").splitlines()
    line = next(n for n in range(code.co_firstlineno, code.co_firstlineno + 5) if marker in lines[n - 1])
    for stat in snapshot.statistics("traceback"):
        if (stat.traceback[-1].filename, stat.traceback[-1].lineno) == (code.co_filename, line):
            return {"traceback": [[f.filename, f.lineno] for f in stat.traceback], "live_bytes": stat.size}
    raise RuntimeError(f"nothing traced at {code.co_filename}:{line}")


KINDS = ((_register, "reachable"), (_leak, "unreachable"), (_raw, "raw"))


def one_search(size: int, frames: int) -> tuple[float, int, list[str]]:
    tracemalloc.start(frames)
    kept = _background(size)
    for n in range(3000):
        _register(n)
    leaked = {_leak(n) for n in range(2000)}
    for _ in range(2000):
        _raw()
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    suspects = [_site(snapshot, function, f"# kind: {kind}") for function, kind in KINDS]
    del snapshot
    started = time.perf_counter()
    answer = find_retention(suspects, max_seconds=120)
    seconds = time.perf_counter() - started
    live = len(gc.get_objects())
    # Hand back what the leaks took: the next size starts from the same heap.
    for obj in gc.get_objects():
        if id(obj) in leaked:
            _decref(obj)
    del kept
    Registry.items.clear()
    rawleak.release()
    tracemalloc.stop()
    gc.collect()
    return seconds, live, [s["kind"] for s in answer["suspects"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="250000,500000,1000000,2000000")
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    seconds: dict[int, list[float]] = {s: [] for s in sizes}
    live: dict[int, int] = {}
    wrong = []
    for round_ in range(args.rounds):
        for size in sizes if round_ % 2 == 0 else sizes[::-1]:
            took, objects, kinds = one_search(size, args.frames)
            seconds[size].append(took)
            live[size] = objects
            if kinds != ["reachable", "unreachable", "raw"]:
                wrong.append(f"{size:,}: {kinds}")
            print(
                f"round {round_ + 1}: {objects:,} live objects, search {took:.2f} s, kinds {kinds}",
                flush=True,
            )
    base = sizes[0]
    rows = []
    for size in sizes:
        took = median(seconds[size])
        rows.append((
            f"{live[size]:,}", f"{took:.2f}", f"{took / live[size] * 1e6:.2f}",
            f"{live[size] / live[base]:.2f}", f"{took / median(seconds[base]):.2f}",
            " ".join(f"{s:.2f}" for s in seconds[size]),
        ))  # fmt: skip
    print()
    print(table(["live tracked objects", "median search (s)", "us per object", "heap vs smallest",
                 "time vs smallest", "rounds (s)"], rows))  # fmt: skip
    print(f"\ntracemalloc at {args.frames} frames; {machine_note()}")
    for line in wrong:
        print(f"WRONG KIND: {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
