"""Suspects: allocation sites (whole tracebacks) whose live memory grew over the measured run."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from analysis.diff import grown_sites
from analysis.model import Frame, SiteStat, Snapshot, Suspect, Traceback
from analysis.thresholds import Thresholds
from analysis.trend import fit_slope

_NO_MEMORY = SiteStat(0, 0)
# tracemalloc's own module allocates while a snapshot is being taken.
_ALWAYS_HARNESS = ("/tracemalloc.py", "<frozen importlib._bootstrap")


def _is_under(file: str, prefixes: Sequence[str]) -> bool:
    return any(file.startswith(prefix) for prefix in prefixes)


def is_harness_frame(frame: Frame, harness_files: Sequence[str]) -> bool:
    return _is_under(frame.file, harness_files) or frame.file.endswith(_ALWAYS_HARNESS[0])


def user_frame(traceback: Traceback, library_files: Sequence[str]) -> Frame | None:
    """The innermost frame in the user's own code, when the allocation itself happened in a
    library (stdlib or an installed package). None when the allocation site is user code."""
    if not traceback or not _is_under(traceback[-1].file, library_files):
        return None
    for frame in reversed(traceback):
        if not _is_under(frame.file, library_files) and not frame.file.startswith("<"):
            return frame
    return None


def late_ratio(growth: Sequence[int], requests: Sequence[int]) -> float:
    """Growth rate over the later half of the intervals divided by the rate over the whole run:
    about 1 for a leak growing in proportion to requests, about 0 for a plateau (a bounded cache,
    a warm-up that ended). Needs three or more points; with two it is 1 (cannot tell)."""
    if len(growth) < 3:
        return 1.0
    total_span = requests[-1] - requests[0]
    overall = (growth[-1] - growth[0]) / total_span if total_span else 0.0
    if overall <= 0:
        return 0.0
    middle = (len(growth) - 1) // 2
    late_span = requests[-1] - requests[middle]
    late = (growth[-1] - growth[middle]) / late_span if late_span else 0.0
    return late / overall


def is_steady(growth: Sequence[int], requests: Sequence[int], steady_ratio: float) -> bool:
    """Still growing in the later half at a rate near the overall one (a leak), rather than
    having filled up early and stopped (a plateau). Two points cannot tell: counted as steady."""
    return late_ratio(growth, requests) >= steady_ratio


def grew_share(growth: Sequence[int]) -> float:
    """Fraction of checkpoint intervals in which the live size grew."""
    steps = list(itertools.pairwise(growth))
    if not steps:
        return 0.0
    return sum(1 for a, b in steps if b > a) / len(steps)


def find_suspects(snapshots: Sequence[Snapshot], measured: int, limits: Thresholds) -> tuple[Suspect, ...]:
    """Sites (whole tracebacks) that grew above the noise floor, leak-like ones (steady) first,
    then by bytes per request. Grouping by whole traceback keeps two callers of one helper apart,
    and keeps a line that merely reused memory freed elsewhere from taking its blame."""
    if len(snapshots) < 2 or measured <= 0:
        return ()
    first, last = snapshots[0], snapshots[-1]
    harness = tuple(first.harness_files) + tuple(last.harness_files)
    requests = [s.requests for s in snapshots]
    found = []
    for traceback, stat, before in grown_sites(first.sites, last.sites, limits.suspect_min_total_bytes):
        size_diff = stat.size - before.size
        per_request = size_diff / measured
        if per_request < limits.suspect_min_bytes_per_request:
            continue
        if not traceback or any(is_harness_frame(f, harness) for f in traceback):
            continue
        shown = tuple(f for f in traceback if not is_harness_frame(f, harness))
        site = shown[-1]
        growth = tuple(s.sites.get(traceback, _NO_MEMORY).size for s in snapshots)
        ratio = late_ratio(growth, requests)
        fit, _method = fit_slope(list(zip(requests, growth, strict=True)))
        found.append(
            Suspect(
                file=site.file,
                line=site.line,
                code=site.code,
                size_diff=size_diff,
                count_diff=stat.count - before.count,
                bytes_per_request=per_request,
                objects_per_request=(stat.count - before.count) / measured,
                traceback=shown,
                user_frame=user_frame(shown, last.library_files),
                growth=growth,
                steady=ratio >= limits.steady_ratio,
                fit_per_request=fit,
                late_ratio=ratio,
                grew_share=grew_share(growth),
            )
        )
    found.sort(key=lambda s: (not s.steady, -s.bytes_per_request))
    return tuple(found[: limits.max_suspects])
