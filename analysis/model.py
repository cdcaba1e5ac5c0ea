"""The data every other analysis module shares: frames, snapshots, samples (what a run gathers),
and the findings made of them (suspects, verdicts, per-worker rows). The bottom of the stack:
it imports no other analysis module.

A snapshot is tracemalloc's live memory grouped by traceback *inside the target*, so what
crosses the wire (and what is kept on disk) is one row per distinct traceback, never one row
per allocation. Tracebacks are tuples of frames, innermost last, like Python's own tracebacks
and like report.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple


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
    # Failed in the warm-up: no figure counts them, but a run stopped before it measured enough
    # because they failed says so (the `requests-failed` rule).
    failed_warmup: int = 0


@dataclass(frozen=True, slots=True)
class RequestFailure:
    """One failed measured request as the load generator saw it."""

    name: str  # "GET /" (Locust's request type and name)
    status: int  # the HTTP status; 0 when no response came (connection refused or reset)
    error: str  # the load generator's account of it, one line


@dataclass(frozen=True, slots=True)
class Phase:
    """One stretch of a run, in order: the warm-up, the measured series, each window after it."""

    name: str  # "warm-up", "series", "call paths", "kept paths", ...
    requests: int
    frames: int  # how deep it was traced; 0: untraced
    took: str  # what it took, in a few words ("5 snapshots", "the call paths to 2 lines")


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
    phases: list[Phase] = field(default_factory=list)  # what ran, in order
    # The agent's answer for the native window (memray, analysis.native reads it), when one ran.
    native: dict[str, object] = field(default_factory=dict)


RetentionKind = Literal["reachable", "unreachable", "raw", "unknown"]


@dataclass(frozen=True, slots=True)
class RetentionPath:
    """What keeps a suspect alive, as the agent's retention search answered (analysis.retention)."""

    found: bool
    method: str  # "items" (a container whose items came from the site), "objects", "buffer", "none"
    root: str
    steps: tuple[str, ...]
    held_type: str
    held_length: int | None
    held_size: int
    objects: int
    truncated: bool  # the search hit its time or depth bound
    note: str
    kind: RetentionKind = "unknown"
    holder: str = ""  # reachable: the holder as a developer writes it, with what it holds
    group: str | None = None  # suspects with one group share one root
    created_traceback: Traceback = ()  # where the root's newest item was allocated, innermost last
    # The call that made it (first user frame), set once the user's files are known
    # (analysis.findings); for "raw", the call into the extension.
    created_at: Frame | None = None

    @property
    def label(self) -> str:
        """The kind and its holder in a few words, for a table cell."""
        if self.kind == "reachable":
            return f"reachable: {self.holder or ' -> '.join((self.root, *self.steps[:1]))}"
        return {
            "unreachable": "unreachable: a reference leaked by C code",
            "raw": "raw: memory with no Python object",
        }.get(self.kind, "unknown")

    @property
    def summary(self) -> str:
        made = ""
        if self.created_at is not None:
            made = f"; made by the call at {self.created_at.file}:{self.created_at.line}"
        if self.kind == "unreachable":
            path = " -> ".join((self.root, *self.steps))
            why = self.note or "nothing the garbage collector tracks refers to it"
            return f"unreachable: {why} ({path}){made}"
        if self.kind == "raw":
            return f"raw: {self.note}{made}"
        if not self.found:
            reason = self.root[1:-1] if self.root.startswith("(") else self.note
            return f"unknown: {reason}" if reason else "unknown"
        held = self.held_type
        if self.held_length is not None:
            held += f" of {self.held_length:,} items"
        path = " -> ".join((self.root, *self.steps)) + f" ({held}, {self.held_size:,} bytes)"
        return f"reachable: {self.holder}, by {path}" if self.holder else path


@dataclass(frozen=True, slots=True)
class Member:
    """A site grouped under a finding because the same root keeps it."""

    file: str
    line: int
    bytes_per_request: float


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
    # traced one frame deep, analysis/call_paths.py): over 1, the one shown is the one whose
    # allocations stayed alive when `path_kept`, else the most called. 0: the traceback is
    # tracemalloc's own.
    paths_seen: int = 0
    path_kept: bool = False
    # The sites one root keeps alive, this one's included, when they were merged into this finding
    # (analysis/findings.py); empty without a retention search.
    members: tuple[Member, ...] = ()


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
