"""The data every other analysis module shares: frames, snapshots, samples.

A snapshot is tracemalloc's live memory grouped by traceback *inside the target*, so what
crosses the wire (and what is kept on disk) is one row per distinct traceback, never one row
per allocation. Tracebacks are tuples of frames, innermost last, like Python's own tracebacks
and like report.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Frame(NamedTuple):
    """One source position. A NamedTuple, not a dataclass, because whole tracebacks of these are
    dict keys in the diff and tuple hashing runs in C."""

    file: str
    line: int
    function: str = ""
    code: str = ""


Traceback = tuple[Frame, ...]  # innermost last


@dataclass(frozen=True, slots=True)
class SiteStat:
    """Live memory attributed to one traceback at the moment of a snapshot."""

    size: int
    count: int
    # In a snapshot merged from several processes: the size in each, in `Snapshot.workers` order
    # (else empty). They sum to `size`.
    workers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerMemory:
    """One process of a multi-worker target (gunicorn's workers, say) at the moment of a merged
    snapshot. The merged snapshot's sites and byte counts are the sums over its workers."""

    pid: int
    rss_bytes: int
    traced_bytes: int
    requests_served: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """tracemalloc's live memory in the target at one moment, grouped by traceback."""

    pid: int
    taken_at: float  # unix time in the target
    requests: int  # measured requests completed when it was taken (0 = baseline)
    rss_bytes: int
    traced_bytes: int
    tracemalloc_overhead_bytes: int  # tracemalloc's own bookkeeping (tracemalloc.get_tracemalloc_memory)
    frames_limit: int
    duration_s: float  # how long the target was paused to take it
    sites: dict[Traceback, SiteStat]
    harness_files: tuple[str, ...] = ()  # path prefixes of the agent's own code, filtered out of suspects
    library_files: tuple[str, ...] = ()  # path prefixes of the stdlib and installed packages in the target
    workers: tuple[WorkerMemory, ...] = ()  # per process, when merged from several (else empty)

    @property
    def total_size(self) -> int:
        return sum(stat.size for stat in self.sites.values())


@dataclass(frozen=True, slots=True)
class Sample:
    """One cheap reading of the target's memory (no snapshot)."""

    requests: int
    elapsed_s: float
    rss_bytes: int
    traced_bytes: int


@dataclass(frozen=True, slots=True)
class RequestCounts:
    warmup: int
    measured: int
    failed: int
    # Made after the measured ones while the suspects' call paths were watched
    # (analysis/call_paths.py); no figure counts them.
    window: int = 0


@dataclass(frozen=True, slots=True)
class RequestFailure:
    """One failed measured request as the load generator saw it."""

    name: str  # "GET /" (Locust's request type and name)
    status: int  # the HTTP status; 0 when no response came (connection refused or reset)
    error: str  # the load generator's account of it, one line


@dataclass(slots=True)
class RunData:
    """Everything a run gathered; the input of `analysis.report.build_report`.

    `snapshots` are in request order: the baseline first (after warm-up), then checkpoints,
    the last one taken at test stop.
    """

    snapshots: list[Snapshot]
    samples: list[Sample]
    requests: RequestCounts
    parameters: dict[str, object] = field(default_factory=dict)
    locust_stats: dict[str, object] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # what happened (target died, agent timeout, ...)
    # The agent's answers on what keeps the leak suspects alive (analysis.retention reads them).
    retention: list[dict[str, object]] = field(default_factory=list)
    # The agent's answer on the call paths reaching the suspects' lines, when the series was
    # traced one frame deep (analysis.call_paths reads it).
    call_paths: dict[str, object] = field(default_factory=dict)
    # The first failed measured requests, and the last exception lines of the target's own log
    # (the `requests-failed` verdict quotes both).
    failures: list[RequestFailure] = field(default_factory=list)
    target_errors: list[str] = field(default_factory=list)
