"""Stopping a run as soon as its verdict is settled (`--until-confident`): when to snapshot, and
when the snapshots so far leave no doubt.

A fixed-length run spends most of its requests confirming what the first thousand showed. A
sequential run snapshots densely at first and then at geometrically spaced points, and after
each checkpoint asks whether the verdict could still change. It stops only for a verdict backed
by a confidence interval, never for "inconclusive"; otherwise it runs to the cap.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from analysis.model import Snapshot
from analysis.report import Report
from analysis.theil_sen import theil_sen

FIRST_STEP = 100  # measured requests between the first checkpoints
DENSE_UNTIL = 500  # then the spacing grows by GROWTH each time
GROWTH = 1.25
LEAK_MIN_SNAPSHOTS = 5  # baseline and four checkpoints: a Theil-Sen interval needs points
LEAK_GROWING_INTERVALS = 3  # the suspect grew in each of the last this many intervals
# No early "leak" before this many requests: a bounded cache still filling grows exactly like a
# leak until it is full (the corpus' `re` cache fills over 512 requests and settled as a leak at
# 400). A cache that fills for longer than this still looks like a leak to an early stop.
LEAK_MIN_REQUESTS = 1000
NO_LEAK_MIN_SNAPSHOTS = 8
NO_LEAK_MIN_REQUESTS = 2000  # a slow leak needs requests to rise above the noise
CONFIDENCE = 0.95
# A run long enough to settle traces its series one frame deep (a third of the untraced speed,
# not a seventh at ten frames), then watches the call paths to the suspects' lines for this many
# requests (analysis/call_paths.py): that window ends the run, or the cap does.
CALL_PATH_WINDOW = 100
SHALLOW_MIN_CAP = LEAK_MIN_REQUESTS


def confident_checkpoints(measured_cap: int) -> list[int]:
    """Measured-request counts to snapshot at: every FIRST_STEP up to DENSE_UNTIL, then growing
    by GROWTH, the cap last."""
    points: list[int] = []
    at = FIRST_STEP
    while at < measured_cap:
        points.append(at)
        at = at + FIRST_STEP if at < DENSE_UNTIL else round(at * GROWTH / FIRST_STEP) * FIRST_STEP
    points.append(measured_cap)
    return points


def series_cap(measured_cap: int, shallow: bool) -> int:
    """Where the snapshot series ends at the latest: the cap, less the call-path window's
    requests when the series is traced one frame deep."""
    return measured_cap - CALL_PATH_WINDOW if shallow else measured_cap


def _slope_interval(xs: Sequence[int], ys: Sequence[int]) -> tuple[float, float]:
    """(low, high) of the Theil-Sen slope's CONFIDENCE interval."""
    fit = theil_sen([float(x) for x in xs], [float(y) for y in ys], CONFIDENCE)
    return fit.low, fit.high


def settled(report: Report, snapshots: Sequence[Snapshot]) -> str | None:
    """Why the verdict of `report` (built from `snapshots`) can be trusted now, or None."""
    verdict = report.verdict.kind
    limits = report.thresholds
    requests = [s.requests for s in snapshots]
    if (
        verdict == "leak"
        and len(snapshots) >= LEAK_MIN_SNAPSHOTS
        and report.requests.measured >= LEAK_MIN_REQUESTS
    ):
        top = next((s for s in report.suspects if s.steady), None)
        if top is None:
            return None
        recent = top.growth[-LEAK_GROWING_INTERVALS - 1 :]
        if not all(b > a for a, b in itertools.pairwise(recent)):
            return None
        low, _high = _slope_interval(requests, top.growth)
        if low < limits.suspect_min_bytes_per_request:
            return None
        return (
            f"{top.file}:{top.line} grew in each of the last {LEAK_GROWING_INTERVALS} intervals, "
            f"at least {low:,.0f} bytes per request ({CONFIDENCE:.0%} interval)"
        )
    if (
        verdict == "no-leak"
        and len(snapshots) >= NO_LEAK_MIN_SNAPSHOTS
        and report.requests.measured >= NO_LEAK_MIN_REQUESTS
        and not any(s.steady for s in report.suspects)
    ):
        _low, traced_high = _slope_interval(requests, [s.traced_bytes for s in snapshots])
        _low, rss_high = _slope_interval(requests, [s.rss_bytes for s in snapshots])
        if traced_high < limits.suspect_min_bytes_per_request and rss_high < (
            limits.native_min_bytes_per_request
        ):
            return (
                f"traced memory grows at most {max(traced_high, 0):,.0f} bytes per request and RSS at "
                f"most {max(rss_high, 0):,.0f} ({CONFIDENCE:.0%} intervals)"
            )
    return None
