"""The report: what every writer renders. Built from a `RunData` by `build_report`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from analysis.call_paths import deepen
from analysis.driven import driven_growth
from analysis.model import Frame, RequestCounts, RequestFailure, RunData, Sample, Snapshot
from analysis.retention import RetentionPath, read_retention, site_key
from analysis.suspects import find_suspects
from analysis.thresholds import Thresholds
from analysis.trend import Trend, memory_trend
from analysis.verdict import decide

SCHEMA_VERSION = 1
WORKER_SUSPECTS = 5  # per worker of a multi-worker target: the merged top suspects, in it

VerdictKind = Literal["leak", "no-leak", "native-leak", "inconclusive"]


@dataclass(frozen=True, slots=True)
class Suspect:
    """One allocation site (a whole traceback) whose live memory grew over the measured requests."""

    file: str
    line: int
    code: str
    size_diff: int
    count_diff: int
    bytes_per_request: float
    objects_per_request: float
    traceback: tuple[Frame, ...]  # innermost last
    user_frame: Frame | None  # first frame in the user's own code, when the site is in a library
    growth: tuple[int, ...]  # live size at each snapshot, baseline first
    steady: bool  # kept growing across the later checkpoints (not a plateau)
    # The evidence behind `steady`: Theil-Sen fit of live size over checkpoints, bytes/request;
    # later-half growth rate over overall rate (1 = proportional to requests, 0 = plateau); and
    # the share of checkpoint intervals in which it grew.
    fit_per_request: float = 0.0
    late_ratio: float = 1.0
    grew_share: float = 0.0
    retention: RetentionPath | None = None  # what keeps it alive, when the agent found it
    # Distinct call paths seen reaching the line when `traceback` is one of them (the series was
    # traced one frame deep, analysis/call_paths.py): over 1, the one shown is the most called,
    # not necessarily the one keeping the memory. 0: the traceback is tracemalloc's own.
    paths_seen: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    requests: int
    rss_bytes: int
    traced_bytes: int
    pause_s: float  # how long the target was blocked taking the snapshot


@dataclass(frozen=True, slots=True)
class WorkerSuspect:
    """One of the run's top suspects as it grew in one worker: that worker's share of the site."""

    file: str
    line: int
    rank: int  # the suspect's place in the merged list, from 1
    size_diff: int  # this worker's growth of the site, baseline to the last snapshot
    bytes_per_request: float  # over the requests this worker served (0 when it served none)
    share: float  # of the merged growth (0..1; can fall outside when other workers shrank)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One process of a multi-worker target, from the baseline to the last snapshot. The run's
    totals (rss, traced, checkpoints) are the sums over these; the suspects are merged, and
    `suspects` shows how the top ones grew in this worker."""

    pid: int
    rss_start: int  # 0 when the worker was not there at the baseline (restarted, say)
    rss_end: int
    traced_start: int
    traced_end: int
    requests_served: int  # between the two snapshots
    # The merged top suspects (at most WORKER_SUSPECTS) in this worker, most growth first; empty
    # when the snapshots carry no per-worker sizes (made before they did).
    suspects: tuple[WorkerSuspect, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    confidence: float  # 0..1
    rule: str  # which rule decided it, in words
    explanation: str  # one or two sentences for a person


@dataclass(frozen=True, slots=True)
class Report:
    verdict: Verdict
    requests: RequestCounts
    rss: Trend
    traced: Trend
    suspects: tuple[Suspect, ...]  # most bytes per request first
    checkpoints: tuple[Checkpoint, ...]
    samples: tuple[Sample, ...]
    thresholds: Thresholds
    parameters: dict[str, object] = field(default_factory=dict)
    locust_stats: dict[str, object] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION
    workers: tuple[WorkerRow, ...] = ()  # per process, for a multi-worker target
    failures: tuple[RequestFailure, ...] = ()  # the first failed measured requests
    target_errors: tuple[str, ...] = ()  # the last exception lines of the target's log


def worker_rows(first: Snapshot, last: Snapshot, suspects: tuple[Suspect, ...] = ()) -> tuple[WorkerRow, ...]:
    before = {w.pid: w for w in first.workers}
    slot_before = {w.pid: index for index, w in enumerate(first.workers)}
    rows = []
    for slot, w in enumerate(last.workers):
        start = before.get(w.pid)
        served = w.requests_served - (start.requests_served if start else 0)
        rows.append(
            WorkerRow(
                pid=w.pid,
                rss_start=start.rss_bytes if start else 0,
                rss_end=w.rss_bytes,
                traced_start=start.traced_bytes if start else 0,
                traced_end=w.traced_bytes,
                requests_served=served,
                suspects=_worker_suspects(first, last, suspects, slot_before.get(w.pid), slot, served),
            )
        )
    return tuple(rows)


def _worker_suspects(
    first: Snapshot,
    last: Snapshot,
    suspects: tuple[Suspect, ...],
    slot_before: int | None,
    slot: int,
    served: int,
) -> tuple[WorkerSuspect, ...]:
    """The merged top suspects as they grew in one worker. A worker that was not there at the
    baseline (restarted) started from nothing."""
    found = []
    for rank, suspect in enumerate(suspects[:WORKER_SUSPECTS], start=1):
        end = last.sites.get(suspect.traceback)
        if end is None:
            continue
        if len(end.workers) != len(last.workers):
            return ()  # snapshots without per-worker sizes
        start = first.sites.get(suspect.traceback)
        size_before = 0
        if slot_before is not None and start is not None and len(start.workers) == len(first.workers):
            size_before = start.workers[slot_before]
        grew = end.workers[slot] - size_before
        found.append(
            WorkerSuspect(
                file=suspect.file,
                line=suspect.line,
                rank=rank,
                size_diff=grew,
                bytes_per_request=grew / served if served > 0 else 0.0,
                share=grew / suspect.size_diff if suspect.size_diff else 0.0,
            )
        )
    return tuple(sorted(found, key=lambda s: (-s.size_diff, s.rank)))


def build_report(run: RunData, thresholds: Thresholds | None = None) -> Report:
    limits = thresholds or Thresholds()
    snapshots = run.snapshots
    measured = run.requests.measured
    suspects = find_suspects(snapshots, measured, limits) if len(snapshots) >= 2 else ()
    suspects = _attach_retention(suspects, run.retention)
    if run.call_paths and snapshots:
        suspects = deepen(suspects, run.call_paths, snapshots[-1].library_files)
    checkpoints = tuple(Checkpoint(s.requests, s.rss_bytes, s.traced_bytes, s.duration_s) for s in snapshots)
    rss = memory_trend([(c.requests, c.rss_bytes) for c in checkpoints], run.samples, "rss_bytes")
    traced = memory_trend([(c.requests, c.traced_bytes) for c in checkpoints], run.samples, "traced_bytes")
    overhead = (
        (snapshots[-1].tracemalloc_overhead_bytes - snapshots[0].tracemalloc_overhead_bytes)
        if len(snapshots) >= 2
        else 0
    )
    verdict = decide(
        measured=measured,
        snapshot_count=len(snapshots),
        suspects=suspects,
        rss=rss,
        traced=traced,
        tracemalloc_overhead_growth=overhead,
        thresholds=limits,
        rss_driven=driven_growth([(c.requests, c.rss_bytes) for c in checkpoints], run.samples, "rss_bytes"),
        failed=run.requests.failed,
        failures=run.failures,
        target_errors=run.target_errors,
    )
    return Report(
        verdict=verdict,
        requests=run.requests,
        rss=rss,
        traced=traced,
        suspects=suspects,
        checkpoints=checkpoints,
        samples=tuple(run.samples),
        thresholds=limits,
        parameters=dict(run.parameters),
        locust_stats=dict(run.locust_stats),
        events=tuple(run.events),
        workers=worker_rows(snapshots[0], snapshots[-1], suspects) if snapshots else (),
        failures=tuple(run.failures),
        target_errors=tuple(run.target_errors),
    )


def _attach_retention(suspects: tuple[Suspect, ...], answers: list[dict[str, object]]) -> tuple[Suspect, ...]:
    """Give each suspect the retention path the agent found for its traceback, if any."""
    paths: dict[tuple[tuple[str, int], ...], RetentionPath] = {}
    for doc in answers:
        entry = read_retention(doc)
        if entry is not None:
            paths[entry[0]] = entry[1]
    if not paths:
        return suspects
    return tuple(replace(s, retention=paths.get(site_key(s.traceback))) for s in suspects)
