"""The fast grouping (in the target) and diff (in analysis) give what stdlib's
`tracemalloc.Snapshot.compare_to` gives, on the same raw traces."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path
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


def _branch(n: int, depth: int) -> Any:
    """3**depth call paths, chosen by n's digits in base 3."""
    if depth == 0:
        return [n, str(n) * 2]
    step = (_branch, _branch_b, _branch_c)[(n // 3 ** (depth - 1)) % 3]
    return step(n, depth - 1)


def _branch_b(n: int, depth: int) -> Any:
    return {"b": _branch(n, depth)}


def _branch_c(n: int, depth: int) -> Any:
    return (_branch(n, depth), bytes(n % 50))


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


# The C grouping itself (memsoak/agent/_grouping.c): what group_traces runs on CPython.
needs_extension = pytest.mark.skipif(tracing._grouping is None, reason="no C extension on this Python")


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="the extensions are built for CPython")
@pytest.mark.parametrize(("extension", "user"), [("_grouping", "tracing"), ("_callhook", "callers")])
def test_extension_is_built_and_used_by_the_installed_package(
    tmp_path: Path, extension: str, user: str
) -> None:
    """The snapshot grouping (tracing.py falls back to sorting without it) and the call-path hook
    (callers.py falls back to sys.setprofile) are both built by `pip install`."""
    # From a directory outside the checkout, so the import comes from what pip installed.
    code = (
        f"import memsoak.agent.{extension} as ext, memsoak.agent.{user} as user\n"
        f"assert user.{extension} is ext, 'the slower fallback is in use'\n"
        "print(ext.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).suffix in {".so", ".pyd"}


@needs_extension
def test_c_grouping_matches_sorting_and_stdlib_under_tracing() -> None:
    assert tracing._grouping is not None
    tracemalloc.start(FRAMES)
    try:
        kept = [_nested(i % 6, i) for i in range(2000)] + [_branch(i, 4) for i in range(4000)]
        traces = tracemalloc._get_traces()
        grouped = tracing._grouping.group(traces)  # traced, as in the target
        statistics = tracemalloc.Snapshot(traces, FRAMES).statistics("traceback")
    finally:
        tracemalloc.stop()
    assert kept
    assert len(grouped) >= 100
    assert sorted(grouped) == sorted(tracing._group_by_sorting(traces))
    expected = {tuple((f.filename, f.lineno) for f in s.traceback): (s.size, s.count) for s in statistics}
    # tracemalloc lists the most recent frame first; Snapshot's Traceback too, once reversed.
    got = {tuple(reversed(tb)): (size, count) for tb, size, count in grouped}
    assert got == expected


@needs_extension
def test_c_grouping_keeps_distinct_objects_apart_and_group_traces_merges_them() -> None:
    assert tracing._grouping is not None
    shared = (("a.py", 1), ("b.py", 2))
    twin = tuple([("a.py", 1), ("b.py", 2)])
    traces = [(0, 10, shared, 2), (0, 5, twin, 2), (0, 3, shared, 2)]
    rows = tracing._grouping.group(traces)
    assert rows == [(shared, 13, 2), (twin, 5, 1)]  # by object, in order of first appearance
    assert rows[0][0] is shared and rows[1][0] is twin
    assert tracing.group_traces(traces) == [(shared, 18, 3)]


@needs_extension
def test_c_grouping_holds_its_references() -> None:
    assert tracing._grouping is not None
    tracebacks = [((f"f{i}.py", i),) for i in range(300)]  # enough groups to grow the table
    traces = [(0, i, tracebacks[i % 300], 1) for i in range(3000)]
    before = [sys.getrefcount(tb) for tb in tracebacks]
    rows = tracing._grouping.group(traces)
    assert [sys.getrefcount(tb) for tb in tracebacks] == [n + 1 for n in before]
    assert all(row[0] is tb for row, tb in zip(rows, tracebacks, strict=True))
    del rows
    assert [sys.getrefcount(tb) for tb in tracebacks] == before
    with pytest.raises(TypeError):  # fails after all the groups were found: they are released
        tracing._grouping.group([*traces, (0, 1, [], 1)])
    assert [sys.getrefcount(tb) for tb in tracebacks] == before


_TB = (("a.py", 1),)


@needs_extension
@pytest.mark.parametrize(
    ("traces", "error"),
    [
        (((0, 1, _TB, 1),), TypeError),  # a tuple of traces, not a list
        (None, TypeError),
        (iter([(0, 1, _TB, 1)]), TypeError),
        ([(0, 1, _TB, 1), None], TypeError),
        ([[0, 1, _TB, 1]], TypeError),
        ([(0, 1, _TB)], TypeError),
        ([(0, 1, _TB, 1, 0)], TypeError),
        ([(0, 1.0, _TB, 1)], TypeError),
        ([(0, "1", _TB, 1)], TypeError),
        ([(0, None, _TB, 1)], TypeError),
        ([(0, True, _TB, 1)], TypeError),
        ([(0, 1, list(_TB), 1)], TypeError),
        ([(0, 1, None, 1)], TypeError),
        ([(0, -1, _TB, 1)], ValueError),
        ([(0, 2**63, _TB, 1)], ValueError),
        ([(0, -(2**70), _TB, 1)], ValueError),
        ([(0, sys.maxsize, _TB, 1), (0, 1, _TB, 1)], ValueError),  # the sum overflows
    ],
)
def test_c_grouping_rejects_bad_input(traces: Any, error: type[Exception]) -> None:
    assert tracing._grouping is not None
    with pytest.raises(error):
        tracing._grouping.group(traces)


@needs_extension
def test_c_grouping_edge_cases() -> None:
    assert tracing._grouping is not None
    assert tracing._grouping.group([]) == []

    class Size(int):
        pass

    assert tracing._grouping.group([(0, Size(7), _TB, 1), (0, 0, _TB, 1)]) == [(_TB, 7, 2)]
    assert tracing._grouping.group([(0, sys.maxsize, _TB, 1)]) == [(_TB, sys.maxsize, 1)]


def _allocated(value: object) -> int:
    """Bytes tracemalloc sees for a new object: none for CPython's cached small ints."""
    if type(value) is int and -5 <= value <= 256:
        return 0
    return sys.getsizeof(value)


@needs_extension
def test_c_grouping_table_is_not_traced() -> None:
    """The hash table (one entry per group, several MiB here) is outside tracemalloc's view:
    grouping 1M traces of 200k tracebacks under tracing adds only the result's own objects."""
    assert tracing._grouping is not None
    groups = 200_000
    tracebacks = [(i,) for i in range(groups)]
    sizes = [1000 + k for k in range(7)]
    traces = [(0, sizes[i % 7], tracebacks[i % groups], 1) for i in range(1_000_000)]
    tracemalloc.start(1)
    try:
        start, _peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        grouped = tracing._grouping.group(traces)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(grouped) == groups
    result = sys.getsizeof(grouped) + sum(
        _allocated(row) + _allocated(row[1]) + _allocated(row[2]) for row in grouped
    )
    assert result > 10 * 2**20  # the table, were it traced, would add another 10 MiB or so
    held = end - start
    # What stays is the result (within CPython's rounding of small allocations) ...
    assert abs(held - result) <= result // 20
    # ... and nothing traced came and went besides it.
    assert peak - start <= held + 64 * 1024
