"""analysis.theil_sen against scipy.stats.theilslopes, the reference implementation."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import theilslopes

from analysis.theil_sen import SMALL, theil_sen
from tests.conftest import REPO

points = st.lists(
    st.tuples(st.integers(0, 60), st.integers(-1000, 1000)),  # small ranges: many ties
    min_size=2,
    max_size=40,
).filter(lambda pts: len({x for x, _ in pts}) >= 2)


# Long enough for the numpy path (over SMALL points), short ones for the plain-Python one.
long_points = st.lists(
    st.tuples(st.integers(0, 200), st.integers(-1000, 1000)), min_size=SMALL + 1, max_size=SMALL + 60
).filter(lambda pts: len({x for x, _ in pts}) >= 2)


@settings(max_examples=300, deadline=None)
@given(st.one_of(points, long_points), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_matches_scipy_with_ties(pts: list[tuple[int, int]], confidence: float) -> None:
    xs = [float(x) for x, _ in pts]
    ys = [float(y) for _, y in pts]
    fit = theil_sen(xs, ys, confidence)
    slope, _intercept, low, high = theilslopes(ys, xs, alpha=confidence)
    assert fit.slope == pytest.approx(slope)
    if math.isnan(low):  # scipy: ties left a negative variance; ours takes it as none
        assert fit.low == fit.high == fit.slope
        return
    assert (fit.low, fit.high) == pytest.approx((low, high))
    assert fit.low <= fit.slope <= fit.high


def test_a_steady_leak_with_one_outlier() -> None:
    xs = [float(x) for x in range(0, 1100, 100)]
    ys = [1000.0 * x for x in xs]
    ys[5] += 5_000_000  # a snapshot's own allocations, once
    fit = theil_sen(xs, ys)
    assert fit.slope == pytest.approx(1000.0)
    assert fit.low <= 1000.0 <= fit.high


def test_refuses_what_has_no_slope() -> None:
    with pytest.raises(ValueError, match="distinct x"):
        theil_sen([5.0, 5.0, 5.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="x values for"):
        theil_sen([1.0, 2.0], [1.0])


def test_a_locust_process_with_the_plugin_does_not_import_numpy() -> None:
    """numpy's import sat on the path of every Locust process `memsoak run` starts: short series
    are fitted without it."""
    code = (
        "import sys, locust, memsoak.locust.plugin\n"
        "from analysis.theil_sen import theil_sen\n"
        "theil_sen([0, 200, 400, 600], [0, 9e6, 1.8e7, 2.7e7])\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
