"""The snapshot wire format (agent -> harness, and on disk in a run directory).

Version 1 is one JSON object::

    {"format": "memsoak-snapshot", "version": 1,
     "pid": int, "taken_at": float, "duration_s": float, "requests": int,
     "rss_bytes": int, "traced_bytes": int, "tracemalloc_overhead_bytes": int,
     "frames_limit": int, "harness_files": [str], "library_files": [str],
     "frames": [[file, line, function, code], ...],          # a table, referenced by index
     "sites":  [[size, count, [frame_index, ...]], ...],     # one row per traceback, innermost last
     "workers": [{"pid", "rss_bytes", "traced_bytes", "requests_served"}, ...],  # optional
     "site_workers": [[size_in_worker, ...], ...]}           # optional, with "workers"

`workers` is present when the snapshot was merged from the processes of a multi-worker target
(analysis.merge); its sites and byte counts are then the sums over those processes.
`site_workers`, when present, has one row per row of `sites`: that site's size in each worker,
in `workers` order, summing to the site's size.

The frame table keeps the document small: a traceback of 10 frames costs 10 small integers.
`duration_s` is how long the target was paused to take it; `child_s`, present when a forked
child built the document (memsoak.agent.forked), how long that took off the target's path.
`requests` is written by the harness when it saves the document (the agent does not know how
many *measured* requests there were); a bare agent response has none and reads as 0.
"""

from __future__ import annotations

import json
from typing import Any

from analysis.model import Frame, SiteStat, Snapshot, Traceback, WorkerMemory

FORMAT = "memsoak-snapshot"
VERSION = 1
_FLOAT_LIMIT = 1e300  # finite, and an int this large still converts to a float
_INT_LIMIT = 2**63  # byte counts, pids, line numbers: anything larger is not from a real process


class SnapshotFormatError(ValueError):
    """The document is not a memsoak snapshot this version can read."""


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if type(value) is not int or not 0 <= value < _INT_LIMIT:
        raise SnapshotFormatError(f"field {key!r} must be a non-negative integer, got {value!r:.80}")
    return value


def _float(doc: dict[str, Any], key: str) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < _FLOAT_LIMIT:
        # NaN fails the range test too
        raise SnapshotFormatError(f"field {key!r} must be a non-negative number, got {value!r:.80}")
    return float(value)


def _strings(doc: dict[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SnapshotFormatError(f"field {key!r} must be a list of strings")
    return tuple(value)


def _frames(raw: Any) -> list[Frame]:
    if not isinstance(raw, list):
        raise SnapshotFormatError("field 'frames' must be a list")
    frames = []
    for index, row in enumerate(raw):
        if (
            not isinstance(row, list)
            or len(row) != 4
            or not isinstance(row[0], str)
            or type(row[1]) is not int
            or not 0 <= row[1] < _INT_LIMIT
            or not isinstance(row[2], str)
            or not isinstance(row[3], str)
        ):
            raise SnapshotFormatError(f"frames[{index}] must be [file, line, function, code]")
        frames.append(Frame(row[0], row[1], row[2], row[3]))
    return frames


def _site_workers(raw: Any, site_count: int, worker_count: int) -> list[tuple[int, ...]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != site_count or not worker_count:
        raise SnapshotFormatError("field 'site_workers' must have one row per site, with 'workers'")
    rows = []
    for index, row in enumerate(raw):
        if (
            not isinstance(row, list)
            or len(row) != worker_count
            or not all(type(size) is int and 0 <= size < _INT_LIMIT for size in row)
        ):
            raise SnapshotFormatError(f"site_workers[{index}] must be a size for each worker")
        rows.append(tuple(row))
    return rows


def _sites(
    raw: Any, frames: list[Frame], per_worker: list[tuple[int, ...]] | None = None
) -> dict[Traceback, SiteStat]:
    if not isinstance(raw, list):
        raise SnapshotFormatError("field 'sites' must be a list")
    sites: dict[Traceback, SiteStat] = {}
    frame_count = len(frames)
    for index, row in enumerate(raw):
        try:
            size, count, indexes = row
            traceback = tuple([frames[i] for i in indexes])
        except (TypeError, ValueError, IndexError):
            raise SnapshotFormatError(f"sites[{index}] must be [size, count, [frame_index, ...]]") from None
        if (
            type(size) is not int
            or type(count) is not int
            or not 0 <= size < _INT_LIMIT
            or not 0 <= count < _INT_LIMIT
            or not all(type(i) is int and 0 <= i < frame_count for i in indexes)
        ):
            raise SnapshotFormatError(f"sites[{index}] has a bad size or count, or a bad frame index")
        shares: tuple[int, ...] = ()
        if per_worker is not None:
            shares = per_worker[index]
            if sum(shares) != size:
                raise SnapshotFormatError(f"site_workers[{index}] does not sum to the site's size")
        previous = sites.get(traceback)
        if previous is not None:  # tolerate a producer that did not merge equal tracebacks
            size += previous.size
            count += previous.count
            if shares:
                shares = tuple(a + b for a, b in zip(shares, previous.workers, strict=True))
        sites[traceback] = SiteStat(size, count, shares)
    return sites


def _workers(raw: Any) -> tuple[WorkerMemory, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SnapshotFormatError("field 'workers' must be a list")
    workers = []
    for row in raw:
        if not isinstance(row, dict):
            raise SnapshotFormatError("each of 'workers' must be an object")
        served = _int(row, "requests_served") if "requests_served" in row else 0
        workers.append(
            WorkerMemory(_int(row, "pid"), _int(row, "rss_bytes"), _int(row, "traced_bytes"), served)
        )
    return tuple(workers)


def snapshot_from_dict(doc: Any) -> Snapshot:
    if not isinstance(doc, dict):
        raise SnapshotFormatError("a snapshot must be a JSON object")
    if doc.get("format") != FORMAT:
        raise SnapshotFormatError(f"not a memsoak snapshot (format={doc.get('format')!r:.40})")
    if doc.get("version") != VERSION:
        raise SnapshotFormatError(f"unsupported snapshot version {doc.get('version')!r:.40}")
    harness = _strings(doc, "harness_files")
    library = _strings(doc, "library_files")
    frames = _frames(doc.get("frames"))
    workers = _workers(doc.get("workers"))
    raw_sites = doc.get("sites")
    per_worker = _site_workers(
        doc.get("site_workers"), len(raw_sites) if isinstance(raw_sites, list) else 0, len(workers)
    )
    return Snapshot(
        pid=_int(doc, "pid"),
        taken_at=_float(doc, "taken_at"),
        requests=_int(doc, "requests") if "requests" in doc else 0,
        rss_bytes=_int(doc, "rss_bytes"),
        traced_bytes=_int(doc, "traced_bytes"),
        tracemalloc_overhead_bytes=_int(doc, "tracemalloc_overhead_bytes"),
        frames_limit=_int(doc, "frames_limit"),
        duration_s=_float(doc, "duration_s"),
        sites=_sites(raw_sites, frames, per_worker),
        harness_files=harness,
        library_files=library,
        workers=workers,
    )


def loads_snapshot(text: str | bytes) -> Snapshot:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SnapshotFormatError(f"not valid JSON: {exc}") from None
    return snapshot_from_dict(doc)


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The inverse of `snapshot_from_dict` (used to write test fixtures and derived snapshots)."""
    index: dict[Frame, int] = {}
    sites = []
    per_worker = []
    for traceback, stat in snapshot.sites.items():
        sites.append([stat.size, stat.count, [index.setdefault(f, len(index)) for f in traceback]])
        per_worker.append(list(stat.workers))
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "pid": snapshot.pid,
        "taken_at": snapshot.taken_at,
        "duration_s": snapshot.duration_s,
        "requests": snapshot.requests,
        "rss_bytes": snapshot.rss_bytes,
        "traced_bytes": snapshot.traced_bytes,
        "tracemalloc_overhead_bytes": snapshot.tracemalloc_overhead_bytes,
        "frames_limit": snapshot.frames_limit,
        "harness_files": list(snapshot.harness_files),
        "library_files": list(snapshot.library_files),
        "frames": [list(frame) for frame in index],
        "sites": sites,
    }
    if snapshot.workers:
        doc["workers"] = [
            {
                "pid": w.pid,
                "rss_bytes": w.rss_bytes,
                "traced_bytes": w.traced_bytes,
                "requests_served": w.requests_served,
            }
            for w in snapshot.workers
        ]
        if per_worker and all(len(row) == len(snapshot.workers) for row in per_worker):
            doc["site_workers"] = per_worker
    return doc
