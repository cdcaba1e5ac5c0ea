"""Watch mode: soak with tracing off, reading only a cheap census (RSS and the allocator's block
count) every few hundred requests, and trace a short window only once growth shows.

tracemalloc costs most of a target's throughput (bench/overhead.py); a census costs nothing
measurable. A leak shows in the census (the seed's 40 KB per request in RSS at once; a leak of
small objects in the block count even while RSS is still filling freed arena space), and then a
traced window of about a thousand requests names its line. A target that never grows is never
traced: its verdict comes from the census alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.model import Verdict
from analysis.theil_sen import theil_sen
from analysis.thresholds import Thresholds

MIN_POINTS = 5  # census readings before a trend is trusted, either way
WINDOW_REQUESTS = 1000  # traced once growth shows
RSS_GROWTH = 256.0  # bytes per request, lower bound of the slope's interval
BLOCK_GROWTH = 0.5  # allocator blocks per request, lower bound of the slope's interval
CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class CensusPoint:
    requests: int
    rss_bytes: int
    settled_blocks: int  # the allocator's blocks just after the last full collection


def watch_checkpoints(measured_cap: int) -> list[int]:
    """Census points: about 40 over the run, at least 100 requests apart, the cap last."""
    step = max(100, measured_cap // 40)
    return [*range(step, measured_cap, step), measured_cap]


def _interval(points: Sequence[CensusPoint], attribute: str) -> tuple[float, float]:
    xs = [float(p.requests) for p in points]
    ys = [float(getattr(p, attribute)) for p in points]
    fit = theil_sen(xs, ys, CONFIDENCE)
    return fit.low, fit.high


def growth(points: Sequence[CensusPoint]) -> str | None:
    """Why the census says memory is growing per request, or None while it does not (yet)."""
    if len(points) < MIN_POINTS:
        return None
    rss_low, _ = _interval(points, "rss_bytes")
    if rss_low >= RSS_GROWTH:
        return f"RSS grows at least {rss_low:,.0f} bytes per request"
    blocks_low, _ = _interval(points, "settled_blocks")
    if blocks_low >= BLOCK_GROWTH:
        return f"Python's allocator holds at least {blocks_low:.1f} more blocks per request"
    return None


def quiet_verdict(points: Sequence[CensusPoint], thresholds: Thresholds) -> Verdict:
    """The verdict of a watch that never saw growth (so never traced)."""
    if len(points) < MIN_POINTS:
        return Verdict(
            "inconclusive",
            0.0,
            "too-little-data",
            f"Only {len(points)} census readings; need {MIN_POINTS}. Run more requests.",
        )
    _low, rss_high = _interval(points, "rss_bytes")
    _low, blocks_high = _interval(points, "settled_blocks")
    if rss_high < thresholds.native_min_bytes_per_request and blocks_high < 1.0:
        return Verdict(
            "no-leak",
            0.7,
            "census-flat",
            f"Watched with tracing off over {points[-1].requests:,} requests: RSS grows at most "
            f"{max(rss_high, 0):,.0f} bytes and the allocator at most {max(blocks_high, 0):.2f} blocks "
            f"per request ({CONFIDENCE:.0%} intervals), so nothing was traced. A leak smaller than "
            "that needs a traced run (without --watch).",
        )
    return Verdict(
        "inconclusive",
        0.3,
        "census-noisy",
        "The census neither showed steady growth nor ruled it out; run without --watch to trace.",
    )
