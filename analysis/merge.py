"""One snapshot from several processes: the workers of a multi-worker target (gunicorn, say).

A leak in a pre-forked server lives in every worker, a share of it in each, in proportion to the
requests each one served. Summing the workers' sites per traceback gives the whole target's
growth per request, which is what the verdict and the suspects are about; the per-worker rows
(`workers` in the wire format) keep each process's RSS and traced memory for the report, and
`site_workers` keeps each site's size in each worker, so the report can say how every suspect
grew in every process.

Works on wire documents (analysis.snapshot_io), so what comes out is itself a version-1 snapshot
that any reader takes as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from analysis.snapshot_io import FORMAT, VERSION, SnapshotFormatError


def merge_snapshot_docs(
    parts: Sequence[Mapping[str, Any]], served: Mapping[int, int] | None = None
) -> dict[str, Any]:
    """Merge per-process snapshot documents into one. `served` maps a pid to the requests that
    process served (shown per worker). The parts are not validated one by one (this may run
    inside the traced target, where every allocation is dear); the result is, by whoever reads
    it, and a part too malformed to merge raises SnapshotFormatError."""
    if not parts:
        raise SnapshotFormatError("no snapshots to merge")
    try:
        return _merge(parts, served or {})
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SnapshotFormatError(
            f"cannot merge the workers' snapshots: {type(exc).__name__}: {exc}"
        ) from None


def _merge(parts: Sequence[Mapping[str, Any]], served: Mapping[int, int]) -> dict[str, Any]:
    frame_index: dict[tuple[str, int, str, str], int] = {}
    # Per traceback: size, count, then the size in each worker (in `workers` order: by pid).
    sites: dict[tuple[int, ...], list[int]] = {}
    ordered = sorted(parts, key=lambda p: int(p["pid"]))
    slot = {id(part): index for index, part in enumerate(ordered)}
    width = len(parts)
    for part in parts:
        local = [frame_index.setdefault((f[0], f[1], f[2], f[3]), len(frame_index)) for f in part["frames"]]
        column = 2 + slot[id(part)]
        for size, count, indexes in part["sites"]:
            key = tuple(local[i] for i in indexes)
            total = sites.get(key)
            if total is None:
                total = sites[key] = [0, 0, *([0] * width)]
            total[0] += size
            total[1] += count
            total[column] += size
    first = parts[0]
    return {
        "format": FORMAT,
        "version": VERSION,
        "pid": first["pid"],
        "taken_at": min(p["taken_at"] for p in parts),
        # The workers are snapshotted concurrently: the target was paused for the longest one.
        "duration_s": max(p["duration_s"] for p in parts),
        "rss_bytes": sum(p["rss_bytes"] for p in parts),
        "traced_bytes": sum(p["traced_bytes"] for p in parts),
        "tracemalloc_overhead_bytes": sum(p["tracemalloc_overhead_bytes"] for p in parts),
        "frames_limit": min(p["frames_limit"] for p in parts),
        "min_site_bytes": max(p.get("min_site_bytes", 0) for p in parts),
        "harness_files": _union(parts, "harness_files"),
        "library_files": _union(parts, "library_files"),
        "frames": [list(frame) for frame in frame_index],
        "sites": [[total[0], total[1], list(key)] for key, total in sites.items()],
        "site_workers": [total[2:] for total in sites.values()],
        "workers": [
            {
                "pid": p["pid"],
                "rss_bytes": p["rss_bytes"],
                "traced_bytes": p["traced_bytes"],
                "requests_served": served.get(p["pid"], 0),
            }
            for p in ordered
        ],
    }


def _union(parts: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    seen: dict[str, None] = {}
    for part in parts:
        for value in part.get(key, []):
            seen.setdefault(value, None)
    return list(seen)
