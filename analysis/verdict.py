"""The verdict rules (DESIGN.md, "Verdict rules"). Each verdict names the rule that produced it and
carries a confidence in 0..1; the rules are tried in this order:

- `requests-failed` (inconclusive): more than `max_failed_share` of the measured requests failed,
  or, in a run that measured fewer than `min_measured_requests`, of its warm-up requests.
  A target that errors serves no real work (a FastAPI app run as WSGI fails every request and
  leaks nothing), so its memory says nothing: never `no-leak`. The explanation quotes the first
  failures and the target's last exception lines.
- `too-little-data` (inconclusive): fewer than `min_measured_requests` requests or 2 snapshots.
- `steady-growth-site` (leak): a suspect above the noise floor kept growing in the later half of
  the run at >= `steady_ratio` of its overall rate. Confidence from the number of snapshots, the
  share of intervals it grew in and how proportional its late growth is. With only two snapshots
  it cannot be told from a cache still filling: confidence 0.6 at most.
- `rss-grows-traced-flat` (native-leak): RSS grows steadily between snapshots (in 75%+ of the
  intervals, as fast late as overall) by more per request than traced memory plus tracemalloc's
  own growth explain, above the native thresholds (RSS slope - traced slope - overhead slope).
- `slowing-growth-site` (inconclusive): a suspect above the floor still grew in the later half,
  but at between `plateau_ratio` and `steady_ratio` of its overall rate: a cache still filling
  or a leak under uneven load. More requests decide it.
- `traced-grows-unattributed` (inconclusive): traced memory grows steadily by the native
  thresholds' amount but no single site explains it (a leak spread over many tracebacks, or
  tracebacks cut too short): more frames or requests decide it.
- `growth-plateaued` / `no-growing-site` (no-leak): the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from analysis.driven import DrivenGrowth
from analysis.model import RequestFailure, Suspect, Verdict
from analysis.thresholds import Thresholds
from analysis.trend import Trend

# Where a native-leak verdict ends when no native window ran; a window's findings replace it
# (analysis/report.py).
NATIVE_HINT = (
    "Use a native profiler to find it: `memray run --native` (then `memray flamegraph --leaks`) or heaptrack."
)


def leak_confidence(suspect: Suspect, snapshot_count: int) -> float:
    if snapshot_count < 3:
        return 0.6
    proportional = min(1.0, suspect.late_ratio)
    # 3 snapshots give one late interval; 6 or more give a fit one outlier cannot sway.
    coverage = min(1.0, (snapshot_count - 1) / 5)
    score = 0.5 + 0.2 * suspect.grew_share + 0.15 * proportional + 0.14 * coverage
    return round(min(score, 0.99), 2)


QUOTED_FAILURES = 3


def failed_requests(
    measured: int,
    failed: int,
    failures: Sequence[RequestFailure],
    target_errors: Sequence[str],
    limits: Thresholds,
    warmup: int = 0,
    failed_warmup: int = 0,
) -> Verdict | None:
    """The `requests-failed` verdict, or None when few enough requests failed. Failures in the
    warm-up count only for a run that then measured too few requests to judge (it was stopped
    because they failed): a service's first requests may fail as it warms up."""
    share = failed / measured if measured > 0 else (1.0 if failed else 0.0)
    if share > limits.max_failed_share and failed > 0:
        what = (
            f"{failed:,} of {measured:,} measured requests failed ({share:.1%}, over the "
            f"{limits.max_failed_share:.1%} allowed)"
        )
    elif failed_warmup > 0 and measured < limits.min_measured_requests:
        warmup_share = failed_warmup / warmup if warmup > 0 else 1.0
        if warmup_share <= limits.max_failed_share:
            return None
        what = (
            f"{failed_warmup:,} of {warmup:,} warm-up requests failed ({warmup_share:.1%}) and the run "
            f"measured {measured:,}"
        )
    else:
        return None
    quoted = "; ".join(
        f"{f.name} -> {f'HTTP {f.status}' if f.status else 'no response'} ({f.error})"
        for f in failures[:QUOTED_FAILURES]
    )
    first = f" First failures: {quoted}." if quoted else ""
    logged = f" The target's log ends with: {' | '.join(target_errors)}" if target_errors else ""
    return Verdict(
        "inconclusive",
        0.0,
        "requests-failed",
        f"{what}: a target that errors cannot be judged.{first}{logged}",
    )


def decide(
    *,
    measured: int,
    snapshot_count: int,
    suspects: Sequence[Suspect],
    rss: Trend,
    traced: Trend,
    tracemalloc_overhead_growth: int,
    thresholds: Thresholds,
    rss_driven: DrivenGrowth | None = None,
    failed: int = 0,
    failures: Sequence[RequestFailure] = (),
    target_errors: Sequence[str] = (),
    warmup: int = 0,
    failed_warmup: int = 0,
) -> Verdict:
    limits = thresholds
    erred = failed_requests(measured, failed, failures, target_errors, limits, warmup, failed_warmup)
    if erred is not None:
        return erred
    if snapshot_count < 2 or measured < limits.min_measured_requests:
        return Verdict(
            "inconclusive",
            0.0,
            "too-little-data",
            f"Only {measured} measured requests and {snapshot_count} snapshots; need at least "
            f"{limits.min_measured_requests} requests and 2 snapshots (3+ to tell a leak from a "
            "plateau). Run more requests.",
        )
    steady = [s for s in suspects if s.steady]
    if steady:
        top = steady[0]
        where = f"{top.file}:{top.line}"
        if top.user_frame is not None:
            where += f" (called from {top.user_frame.file}:{top.user_frame.line})"
        caveat = (
            " Only two snapshots: a cache still filling would look the same; use 3+ checkpoints."
            if snapshot_count < 3
            else ""
        )
        return Verdict(
            "leak",
            leak_confidence(top, snapshot_count),
            "steady-growth-site",
            f"{where} keeps {top.bytes_per_request:,.0f} bytes per request "
            f"({top.size_diff:,} bytes over {measured:,} requests, fit {top.fit_per_request:,.0f} "
            f"B/request) and grew in {top.grew_share:.0%} of the intervals, as fast late in the run "
            f"as overall ({top.late_ratio:.2f}x).{caveat}",
        )
    traced_rate = max(traced.per_request, 0.0) + max(tracemalloc_overhead_growth, 0) / measured
    # RSS growth between snapshots only (analysis/driven.py): the snapshots' own footprint is not
    # the app's. Without readings before the snapshots, the fit over all points stands in.
    driven = rss_driven if rss_driven is not None and rss_driven.intervals > 0 else None
    rss_rate = driven.per_request if driven is not None else rss.per_request
    untraced_rate = rss_rate - traced_rate
    steady_rss = (
        driven.late_ratio >= limits.steady_ratio and driven.grew_share >= 0.75
        if driven is not None and len(driven.cumulative) >= 3
        else driven is not None or snapshot_count < 3
    )
    if (
        untraced_rate >= limits.native_min_bytes_per_request
        and untraced_rate * measured >= limits.native_min_total_bytes
        and traced_rate < limits.native_traced_share * rss_rate
        and steady_rss
    ):
        share = traced_rate / rss_rate if rss_rate > 0 else 0.0
        confidence = (0.85 if snapshot_count >= 4 else 0.75) if snapshot_count >= 3 else 0.6
        return Verdict(
            "native-leak",
            round(confidence + 0.1 * (1 - share / limits.native_traced_share), 2),
            "rss-grows-traced-flat",
            f"RSS grows {rss_rate:,.0f} bytes per request between snapshots while Python's traced "
            f"memory (with tracemalloc's own) grows {traced_rate:,.0f}: {untraced_rate:,.0f} bytes "
            "per request come from outside Python's allocators (C extensions, ctypes, native "
            "libraries). tracemalloc cannot see this memory, so no line is named. " + NATIVE_HINT,
        )
    slowing = [s for s in suspects if limits.plateau_ratio <= s.late_ratio < limits.steady_ratio]
    if slowing:
        top = slowing[0]
        return Verdict(
            "inconclusive",
            0.5,
            "slowing-growth-site",
            f"{top.file}:{top.line} grew {top.bytes_per_request:,.0f} bytes per request but only "
            f"{top.late_ratio:.2f}x as fast late in the run as overall: a cache still filling, or a "
            f"leak under uneven load. Run about 4x the requests ({4 * measured:,}) with 5+ "
            "checkpoints: a plateau flattens, a leak keeps its rate.",
        )
    if (
        traced.per_request >= limits.native_min_bytes_per_request
        and traced.per_request * measured >= limits.native_min_total_bytes
    ):
        return Verdict(
            "inconclusive",
            0.4,
            "traced-grows-unattributed",
            f"Traced memory grows {traced.per_request:,.0f} bytes per request but no single "
            "traceback explains it steadily: the growth is spread over many sites, or tracebacks "
            "are too short to tell them apart. Run with more --frames and more requests.",
        )
    if suspects:
        plateaued = len(suspects)
        return Verdict(
            "no-leak",
            0.85 if snapshot_count >= 4 else (0.75 if snapshot_count >= 3 else 0.5),
            "growth-plateaued",
            f"{plateaued} site(s) grew early in the run but stopped growing (late-run rate under "
            f"{limits.plateau_ratio:.0%} of the overall one): bounded caches or warm-up, not leaks.",
        )
    return Verdict(
        "no-leak",
        0.9 if snapshot_count >= 3 else 0.7,
        "no-growing-site",
        f"No allocation site kept {limits.suspect_min_bytes_per_request:.0f}+ bytes per request "
        f"({limits.suspect_min_total_bytes:,}+ in all) over {measured:,} requests, and RSS grew "
        f"{rss.per_request:,.0f} bytes per request.",
    )
