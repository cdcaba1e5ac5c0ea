"""The verdict rules (DESIGN.md, "Verdict rules"), each one named in the report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from analysis.thresholds import Thresholds
from analysis.trend import Trend

if TYPE_CHECKING:
    from analysis.report import Suspect, Verdict


def _growth_share(suspect: Suspect) -> float:
    """Fraction of checkpoint intervals in which the suspect's live size grew."""
    steps = list(zip(suspect.growth, suspect.growth[1:], strict=False))
    if not steps:
        return 0.0
    return sum(1 for a, b in steps if b > a) / len(steps)


def decide(
    *,
    measured: int,
    snapshot_count: int,
    suspects: Sequence[Suspect],
    rss: Trend,
    traced: Trend,
    tracemalloc_overhead_growth: int,
    thresholds: Thresholds,
) -> Verdict:
    from analysis.report import Verdict

    if snapshot_count < 2 or measured < thresholds.min_measured_requests:
        return Verdict(
            "inconclusive",
            0.0,
            "too-little-data",
            f"Only {measured} measured requests and {snapshot_count} snapshots; need at least "
            f"{thresholds.min_measured_requests} requests and 2 snapshots. Run more requests.",
        )
    steady = [s for s in suspects if s.steady]
    if steady:
        top = steady[0]
        # Two snapshots cannot separate a leak from a cache still filling: say so in the number.
        confidence = 0.6 if snapshot_count < 3 else round(0.5 + 0.5 * _growth_share(top), 2)
        return Verdict(
            "leak",
            confidence,
            "steady-growth-site",
            f"{top.file}:{top.line} keeps {top.bytes_per_request:,.0f} bytes per request "
            f"({top.size_diff:,} bytes over {measured:,} requests) and was still growing at the end.",
        )
    rss_total = rss.end - rss.start
    traced_rate = max(traced.per_request, 0.0) + max(tracemalloc_overhead_growth, 0) / measured
    if (
        rss.per_request >= thresholds.native_min_bytes_per_request
        and rss_total >= thresholds.native_min_total_bytes
        and traced_rate < thresholds.native_traced_share * rss.per_request
    ):
        return Verdict(
            "native-leak",
            0.8 if snapshot_count >= 3 else 0.6,
            "rss-grows-traced-flat",
            f"RSS grows {rss.per_request:,.0f} bytes per request while Python's traced memory grows "
            f"{traced_rate:,.0f}: memory allocated outside Python's allocators (C extensions, "
            "ctypes), which tracemalloc cannot see. Use a native profiler such as memray "
            "(--native) or heaptrack to find it.",
        )
    if suspects:
        return Verdict(
            "no-leak",
            0.8,
            "growth-plateaued",
            f"{len(suspects)} site(s) grew early in the run but stopped growing: bounded caches or "
            "warm-up, not leaks.",
        )
    return Verdict(
        "no-leak",
        0.9 if snapshot_count >= 3 else 0.7,
        "no-growing-site",
        f"No allocation site kept {thresholds.suspect_min_bytes_per_request:.0f}+ bytes per "
        f"request over {measured:,} requests, and RSS grew {rss.per_request:,.0f} bytes per request.",
    )
