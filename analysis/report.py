"""The report: what every writer renders. Built from a `RunData` by `build_report`.

The top of analysis' one-way stack: model -> suspects, trend, driven, call_paths -> verdict ->
report -> writers. Its parts (Suspect, Verdict, ...) live in `analysis.model`; they are imported
here under their old names too, for code written before they moved."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from analysis.call_paths import deepen
from analysis.driven import driven_growth
from analysis.findings import findings
from analysis.model import (
    Checkpoint,
    Phase,
    RequestCounts,
    RequestFailure,
    RunData,
    Sample,
    Snapshot,
    Suspect,
    Verdict,
    VerdictKind,
    WorkerRow,
    WorkerSuspect,
)
from analysis.native import NativeWindow, explain, read_native
from analysis.retention import read_retentions, site_key
from analysis.suspects import find_suspects
from analysis.thresholds import Thresholds
from analysis.trend import Trend, memory_trend
from analysis.verdict import NATIVE_HINT, decide

__all__ = [
    "Checkpoint",
    "Report",
    "Suspect",
    "Verdict",
    "VerdictKind",
    "WorkerRow",
    "WorkerSuspect",
    "build_report",
]

SCHEMA_VERSION = 1
WORKER_SUSPECTS = 5  # per worker of a multi-worker target: the merged top suspects, in it


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
    phases: tuple[Phase, ...] = ()  # what ran, in order
    native: NativeWindow | None = None  # the native window's sites, when one ran


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
    if snapshots:
        suspects = findings(suspects, snapshots[-1].library_files)
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
        warmup=run.requests.warmup,
        failed_warmup=run.requests.failed_warmup,
        failures=run.failures,
        target_errors=run.target_errors,
    )
    native = read_native(run.native, rss.per_request) if run.native else None
    if native is not None and verdict.kind == "native-leak":
        # What the window found stands where the verdict would send the user to another tool.
        verdict = replace(verdict, explanation=verdict.explanation.replace(NATIVE_HINT, explain(native)))
    elif native is not None and verdict.kind == "leak":  # opened for a raw buffer: where C took it
        verdict = replace(verdict, explanation=f"{verdict.explanation} {explain(native)}")
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
        phases=tuple(run.phases),
        native=native,
    )


def _attach_retention(suspects: tuple[Suspect, ...], answers: list[dict[str, object]]) -> tuple[Suspect, ...]:
    """Give each suspect the retention path the agent found for its traceback, if any."""
    paths = read_retentions(answers)
    if not paths:
        return suspects
    return tuple(replace(s, retention=paths.get(site_key(s.traceback))) for s in suspects)
