"""Theil-Sen line fits: the slope is the median of the slopes between every pair of points, so a
few stalled or spiky readings (a GC pass, a snapshot's own allocations) cannot drag it.

The confidence interval on the slope is Sen's (1968): it counts how many pairwise slopes lie on
each side, using the normal approximation to Kendall's tau with the correction for tied x and y
values. Written on numpy rather than taken from scipy.stats: importing scipy.stats cost 1.5 s in
every `memsoak run` and again in its Locust process, for one function over a few hundred points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class SlopeFit:
    slope: float
    low: float  # the confidence interval on the slope
    high: float


def _tie_term(values: npt.NDArray[np.float64]) -> float:
    """Sum of t(t-1)(2t+5) over groups of t equal values: what ties take from Kendall's variance."""
    _distinct, counts = np.unique(values, return_counts=True)
    tied = counts[counts > 1].astype(np.float64)
    return float(np.sum(tied * (tied - 1) * (2 * tied + 5)))


def theil_sen(xs: Sequence[float], ys: Sequence[float], confidence: float = 0.95) -> SlopeFit:
    """The Theil-Sen slope of y on x with its two-sided `confidence` interval. ValueError when
    fewer than two distinct x values leave no slope to take."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values for {len(ys)} y values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    first, second = np.triu_indices(len(x), k=1)
    run = x[second] - x[first]
    apart = run != 0
    slopes = np.sort((y[second] - y[first])[apart] / run[apart])
    if not len(slopes):
        raise ValueError("a slope needs at least two distinct x values")
    n = len(x)
    variance = (n * (n - 1) * (2 * n + 5) - _tie_term(x) - _tie_term(y)) / 18
    reach = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(max(variance, 0.0))
    last = len(slopes) - 1
    # The interval's ends are the order statistics that many slopes in from either end.
    low_index = max(round((len(slopes) - reach) / 2) - 1, 0)
    high_index = min(round((len(slopes) + reach) / 2), last)
    return SlopeFit(float(np.median(slopes)), float(slopes[low_index]), float(slopes[high_index]))
