from __future__ import annotations

import json

import pytest

from analysis.model import Frame, SiteStat, Snapshot
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
