from __future__ import annotations

import json

import pytest

from analysis.model import Frame, SiteStat, Snapshot, WorkerMemory
from analysis.snapshot_io import SnapshotFormatError, loads_snapshot, snapshot_from_dict, snapshot_to_dict


def _snapshot() -> Snapshot:
    a = Frame("/app/a.py", 3, "f", "x = []")
    b = Frame("/app/b.py", 9, "g", "x.append(1)")
    return Snapshot(
        pid=1, taken_at=2.5, requests=100, rss_bytes=10, traced_bytes=5, tracemalloc_overhead_bytes=1,
        frames_limit=10, duration_s=0.1, sites={(a,): SiteStat(64, 1), (a, b): SiteStat(128, 2)},
        harness_files=("/h/",), library_files=("/lib/",),
    )  # fmt: skip


def test_round_trip() -> None:
    snapshot = _snapshot()
    assert loads_snapshot(json.dumps(snapshot_to_dict(snapshot))) == snapshot


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda d: d.update(format="other"), "not a memsoak snapshot"),
        (lambda d: d.update(version=99), "unsupported snapshot version"),
        (lambda d: d.update(pid=-1), "'pid'"),
        (lambda d: d.update(frames=[[1, 2]]), "frames[0]"),
        (lambda d: d["sites"].append([1, 1, [-1]]), "bad frame index"),
        (lambda d: d["sites"].append([1, 1, [99]]), "sites[2]"),
        (lambda d: d["sites"].append("x"), "sites[2]"),
        (lambda d: d.update(harness_files="nope"), "harness_files"),
    ],
)
def test_malformed_documents_are_refused_with_a_reason(mutate, says: str) -> None:
    doc = snapshot_to_dict(_snapshot())
    mutate(doc)
    with pytest.raises(SnapshotFormatError, match=says.replace("[", r"\[").replace("]", r"\]")):
        snapshot_from_dict(doc)


def test_not_json() -> None:
    with pytest.raises(SnapshotFormatError, match="not valid JSON"):
        loads_snapshot(b"\x80garbage")


def _merged() -> Snapshot:
    a = Frame("/app/a.py", 3, "f", "x = []")
    return Snapshot(
        pid=1, taken_at=2.5, requests=100, rss_bytes=30, traced_bytes=15, tracemalloc_overhead_bytes=1,
        frames_limit=10, duration_s=0.1, sites={(a,): SiteStat(96, 3, (64, 32))},
        workers=(WorkerMemory(7, 10, 5, 40), WorkerMemory(9, 20, 10, 60)),
    )  # fmt: skip


def test_per_worker_sizes_round_trip() -> None:
    doc = snapshot_to_dict(_merged())
    assert doc["site_workers"] == [[64, 32]]
    assert loads_snapshot(json.dumps(doc)) == _merged()
    del doc["site_workers"]  # a merged snapshot from before they were kept still reads
    assert next(iter(snapshot_from_dict(doc).sites.values())).workers == ()


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda d: d.update(site_workers=[[64, 31]]), "does not sum"),
        (lambda d: d.update(site_workers=[[96]]), "site_workers[0]"),
        (lambda d: d.update(site_workers=[[64, -1]]), "site_workers[0]"),
        (lambda d: d.update(site_workers=[[64, 32], [1, 1]]), "one row per site"),
        (lambda d: d.update(site_workers="x"), "one row per site"),
        (lambda d: d.pop("workers"), "with 'workers'"),
    ],
)
def test_malformed_per_worker_sizes_are_refused(mutate, says: str) -> None:
    doc = snapshot_to_dict(_merged())
    mutate(doc)
    with pytest.raises(SnapshotFormatError, match=says.replace("[", r"\[").replace("]", r"\]")):
        snapshot_from_dict(doc)
