"""Theil-Sen line fits: the slope is the median of the slopes between every pair of points, so a
few stalled or spiky readings (a GC pass, a snapshot's own allocations) cannot drag it.

The confidence interval on the slope is Sen's (1968): it counts how many pairwise slopes lie on
each side, using the normal approximation to Kendall's tau with the correction for tied x and y
values. Written here rather than taken from scipy.stats: importing scipy.stats cost 1.5 s in
every `memsoak run` and again in its Locust process, for one function over a few hundred points.
Series of up to SMALL points (a run's snapshots, a short run's samples) are fitted in plain
Python; longer ones on numpy, imported only then: its import (0.05-0.1 s) was on the path of
every Locust process that `memsoak run` starts, before its first request.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Up to this many points the pairwise slopes (n(n-1)/2 of them: 2,016 here) are quicker in plain
# Python than numpy's import.
SMALL = 64


@dataclass(frozen=True, slots=True)
class SlopeFit:
    slope: float
    low: float  # the confidence interval on the slope
    high: float


def _tie_term(counts: Sequence[int]) -> float:
    """Sum of t(t-1)(2t+5) over groups of t equal values: what ties take from Kendall's variance."""
    return float(sum(t * (t - 1) * (2 * t + 5) for t in counts if t > 1))


def _small_slopes(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], float]:
    """The sorted pairwise slopes and the ties' share of the variance, in plain Python."""
    n = len(xs)
    slopes = sorted(
        (ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(n) for j in range(i + 1, n) if xs[j] != xs[i]
    )
    ties = _tie_term(list(Counter(xs).values())) + _tie_term(list(Counter(ys).values()))
    return slopes, ties


def _numpy_slopes(xs: Sequence[float], ys: Sequence[float]) -> tuple[npt.NDArray[np.float64], float]:
    """The same on numpy, for long series."""
    import numpy as np

    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    first, second = np.triu_indices(len(x), k=1)
    run = x[second] - x[first]
    apart = run != 0
    slopes = np.sort((y[second] - y[first])[apart] / run[apart])
    ties = sum(_tie_term(np.unique(v, return_counts=True)[1].tolist()) for v in (x, y))
    return slopes, ties


def theil_sen(xs: Sequence[float], ys: Sequence[float], confidence: float = 0.95) -> SlopeFit:
    """The Theil-Sen slope of y on x with its two-sided `confidence` interval. ValueError when
    fewer than two distinct x values leave no slope to take."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values for {len(ys)} y values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    fx, fy = [float(v) for v in xs], [float(v) for v in ys]
    slopes, ties = _small_slopes(fx, fy) if len(fx) <= SMALL else _numpy_slopes(fx, fy)
    if not len(slopes):
        raise ValueError("a slope needs at least two distinct x values")
    n = len(fx)
    variance = (n * (n - 1) * (2 * n + 5) - ties) / 18
    reach = NormalDist().inv_cdf(0.5 + confidence / 2) * math.sqrt(max(variance, 0.0))
    last = len(slopes) - 1
    # The interval's ends are the order statistics that many slopes in from either end.
    low_index = max(round((len(slopes) - reach) / 2) - 1, 0)
    high_index = min(round((len(slopes) + reach) / 2), last)
    middle = len(slopes) // 2
    median = slopes[middle] if len(slopes) % 2 else (slopes[middle - 1] + slopes[middle]) / 2
    return SlopeFit(float(median), float(slopes[low_index]), float(slopes[high_index]))
