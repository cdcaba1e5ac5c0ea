"""The fast grouping (in the target) and diff (in analysis) give what stdlib's
`tracemalloc.Snapshot.compare_to` gives, on the same raw traces."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from analysis.diff import diff_sites
from analysis.model import Snapshot
from analysis.snapshot_io import snapshot_from_dict
from memsoak.agent import tracing

FRAMES = 25


def _nested(depth: int, n: int) -> Any:
    if depth == 0:
        return [{"n": n * 1000}, [n * 1000, n * 1001], str(n) * 3]
    if n % 3:
        return _nested(depth - 1, n)
    return _other(depth - 1, n)


def _other(depth: int, n: int) -> Any:
    return ("x", _nested(depth, n + 1))


def _raw_traces() -> tuple[list[Any], list[Any]]:
    """Two moments of one traced process: many tracebacks, some sites growing, some freed."""
    tracemalloc.start(FRAMES)
    try:
        kept = [_nested(i % 7, i) for i in range(6000)]
        dropped = [bytearray(100 + i % 50) for i in range(2000)]
        before = tracemalloc._get_traces()
        kept += [_nested(i % 5, i) for i in range(3000)]
        del dropped
        after = tracemalloc._get_traces()
    finally:
        tracemalloc.stop()
    assert kept
    return before, after


def _memsoak_snapshot(traces: list[Any]) -> Snapshot:
    frames, sites = tracing.sites_from_traces(traces, min_site_bytes=0)
    doc = {
        "format": "memsoak-snapshot",
        "version": 1,
        "pid": 1,
        "taken_at": 0.0,
        "duration_s": 0.0,
        "rss_bytes": 0,
        "traced_bytes": 0,
        "tracemalloc_overhead_bytes": 0,
        "frames_limit": FRAMES,
        "frames": frames,
        "sites": sites,
    }
    return snapshot_from_dict(doc)


def _stdlib(stats: list[tracemalloc.StatisticDiff]) -> dict[tuple[tuple[str, int], ...], tuple[int, ...]]:
    return {
        tuple((f.filename, f.lineno) for f in s.traceback): (s.size, s.size_diff, s.count, s.count_diff)
        for s in stats
    }


@pytest.fixture(scope="module")
def traces() -> tuple[list[Any], list[Any]]:
    return _raw_traces()


@pytest.mark.parametrize(("group_by", "stdlib_key"), [("traceback", "traceback"), ("line", "lineno")])
def test_diff_matches_compare_to(traces: tuple[list[Any], list[Any]], group_by: str, stdlib_key: str) -> None:
    before, after = traces
    expected = _stdlib(
        tracemalloc.Snapshot(after, FRAMES).compare_to(tracemalloc.Snapshot(before, FRAMES), stdlib_key)
    )
    diffs = diff_sites(_memsoak_snapshot(before).sites, _memsoak_snapshot(after).sites, group_by)  # type: ignore[arg-type]
    got = {
        tuple((f.file, f.line) for f in d.traceback): (d.size, d.size_diff, d.count, d.count_diff)
        for d in diffs
    }
    assert len(expected) >= (
        10 if group_by == "traceback" else 5
    )  # enough distinct sites for the comparison to mean something
    assert any(v[1] < 0 for v in expected.values()) and any(v[1] > 0 for v in expected.values())
    assert got == expected
    # Biggest change first, as compare_to orders them.
    assert [abs(d.size_diff) for d in diffs] == sorted((abs(d.size_diff) for d in diffs), reverse=True)


def test_grouping_merges_equal_tracebacks_that_are_different_objects() -> None:
    shared = (("a.py", 1), ("b.py", 2))
    twin = tuple([("a.py", 1), ("b.py", 2)])  # equal, not the same object
    other = (("c.py", 3),)
    assert twin == shared and twin is not shared
    traces = [(0, 10, shared, 2), (0, 5, twin, 2), (0, 7, other, 1), (1, 1, shared, 2)]
    grouped = {tb: (size, count) for tb, size, count in tracing.group_traces(traces)}
    assert grouped == {shared: (16, 3), other: (7, 1)}
    assert grouped == {tb: (s, c) for tb, s, c in tracing._group_by_sorting(traces)}


def test_fast_grouping_matches_sorting(traces: tuple[list[Any], list[Any]]) -> None:
    _before, after = traces
    fast = sorted(tracing.group_traces(after))
    assert fast == sorted(tracing._group_by_sorting(after))
    assert sum(size for _tb, size, _count in fast) == sum(t[1] for t in after)
