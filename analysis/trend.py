"""Bytes per request from a series of (requests, bytes) points, fitted robustly."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analysis.model import Sample
from analysis.theil_sen import theil_sen


@dataclass(frozen=True, slots=True)
class Trend:
    start: int
    end: int
    per_request: float  # fitted slope, bytes per measured request
    points: int  # how many points the fit used
    method: str  # "theil-sen" or "two-point"


def fit_slope(points: Sequence[tuple[int, int]]) -> tuple[float, str]:
    """Theil-Sen slope (median of pairwise slopes): one stalled or spiky reading cannot drag it."""
    distinct_x = {x for x, _ in points}
    if len(distinct_x) < 2:
        return 0.0, "none"
    if len(points) == 2 or len(distinct_x) == 2:
        (x0, y0), (x1, y1) = min(points), max(points)
        return (y1 - y0) / (x1 - x0), "two-point"
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    slope = theil_sen(xs, ys).slope
    return slope, "theil-sen"


def memory_trend(checkpoints: Sequence[tuple[int, int]], samples: Iterable[Sample], attribute: str) -> Trend:
    """Fit one memory series (`rss_bytes` or `traced_bytes`) over checkpoints and samples."""
    points = list(checkpoints)
    points.extend((s.requests, getattr(s, attribute)) for s in samples)
    points.sort()
    if not points:
        return Trend(0, 0, 0.0, 0, "none")
    slope, method = fit_slope(points)
    start = checkpoints[0][1] if checkpoints else points[0][1]
    end = checkpoints[-1][1] if checkpoints else points[-1][1]
    return Trend(start, end, slope, len(points), method)
