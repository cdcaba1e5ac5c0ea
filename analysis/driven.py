"""Memory growth driven by requests, apart from the snapshots' own footprint.

Taking a snapshot builds a list of every trace in the target; when it is freed, the allocator
keeps much of that memory, so RSS steps up (or down) by megabytes at each snapshot whatever the
app does. Measured on the corpus: a bounded cache's RSS went 78 -> 84 -> 82 -> 82 -> 87 MB over
four checkpoints while traced memory stayed flat, which a fit over all points reads as 8 KB per
request of "native" growth. Between snapshots, though, RSS stayed flat to the byte.

So the growth that requests drive is summed over the intervals between snapshots only: from the
reading right after snapshot k (its `rss_bytes`) to the reading right before snapshot k+1 (the
first sample at k+1's request count: the harness reads the status before asking for a snapshot,
and a status asked during a snapshot is answered after it).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.model import Sample
from analysis.suspects import grew_share, late_ratio


@dataclass(frozen=True, slots=True)
class DrivenGrowth:
    per_request: float  # bytes per request grown inside the intervals, 0 when unknown
    total: int  # bytes grown inside the intervals
    cumulative: tuple[int, ...]  # running total at each snapshot (first 0)
    intervals: int  # intervals with a reading before their closing snapshot
    late_ratio: float  # as for suspects: late-half rate over overall rate
    grew_share: float  # share of intervals in which it grew


def _reading_before(samples: Sequence[Sample], requests: int, earlier_than: int) -> Sample | None:
    """The first sample at `requests` (the one taken before that snapshot), else the last one
    between the previous snapshot and it."""
    for sample in samples:
        if sample.requests == requests:
            return sample
    between = [s for s in samples if earlier_than < s.requests < requests]
    return between[-1] if between else None


def driven_growth(
    checkpoints: Sequence[tuple[int, int]], samples: Sequence[Sample], attribute: str
) -> DrivenGrowth:
    """`checkpoints`: (requests, value read after that snapshot); `attribute`: "rss_bytes"."""
    cumulative = [0]
    covered = 0
    measured_intervals = 0
    for (start_requests, after_value), (end_requests, _end_after) in itertools.pairwise(checkpoints):
        before = _reading_before(samples, end_requests, start_requests)
        if before is None:
            cumulative.append(cumulative[-1])
            continue
        cumulative.append(cumulative[-1] + getattr(before, attribute) - after_value)
        covered += before.requests - start_requests
        measured_intervals += 1
    total = cumulative[-1]
    requests = [r for r, _ in checkpoints]
    return DrivenGrowth(
        per_request=total / covered if covered > 0 else 0.0,
        total=total,
        cumulative=tuple(cumulative),
        intervals=measured_intervals,
        late_ratio=late_ratio(cumulative, requests) if len(cumulative) == len(requests) else 0.0,
        grew_share=grew_share(cumulative),
    )
