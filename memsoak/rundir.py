"""A run directory: what a run gathered (snapshots, samples, counts) and the reports made from it.

Everything is written as it arrives, atomically, so a run that dies at any point leaves data that
`memsoak report DIR` can render. File names come only from this module's own counters.

    run.json              parameters, request counts, samples, events, Locust stats, status
    snapshots/NNN-LABEL.json   agent snapshots (analysis.snapshot_io format, with "requests")
    report.*              the reports (analysis.writers)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.model import Phase, RequestCounts, RequestFailure, RunData, Sample, Snapshot
from analysis.snapshot_io import SnapshotFormatError, loads_snapshot, snapshot_from_dict
from analysis.thresholds import Thresholds
from memsoak.atomic import atomic_text, write_atomic
from memsoak.errors import MemsoakError

if TYPE_CHECKING:
    from analysis.report import Report

RUN_FILE = "run.json"
SNAPSHOT_DIR = "snapshots"


class RunDirError(MemsoakError):
    pass


class RunDir:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def prepare(self) -> RunDir:
        """Create the directory and prove it is writable, before any load is sent."""
        try:
            (self.path / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(
                f"cannot write to output directory {self.path}: {exc.strerror or exc}"
            ) from None
        return self

    def save_snapshot(self, doc: dict[str, Any], requests: int, label: str) -> Snapshot:
        """Validate an agent snapshot, stamp it with the measured request count and keep it."""
        return self.write_snapshot(doc, requests, label)[0]

    def write_snapshot(self, doc: dict[str, Any], requests: int, label: str) -> tuple[Snapshot, Path]:
        """`save_snapshot`, also saying which file holds it."""
        doc["requests"] = requests
        snapshot = snapshot_from_dict(doc)
        sequence = len(list((self.path / SNAPSHOT_DIR).glob("*.json")))
        path = self.path / SNAPSHOT_DIR / f"{sequence:03d}-{label}.json"
        with atomic_text(path) as file:
            json.dump(doc, file, separators=(",", ":"))
        return snapshot, path

    def save_state(self, run: RunData, status: str) -> None:
        state = {
            "status": status,
            "requests": asdict(run.requests),
            "samples": [asdict(s) for s in run.samples],
            "parameters": run.parameters,
            "locust_stats": run.locust_stats,
            "events": run.events,
            "retention": run.retention,
            "call_paths": run.call_paths,
            "failures": [asdict(f) for f in run.failures],
            "target_errors": run.target_errors,
            "phases": [asdict(p) for p in run.phases],
            "native": run.native,
        }
        with atomic_text(self.path / RUN_FILE) as file:
            json.dump(state, file, indent=1, default=str)

    def add_events(self, events: Iterable[str], status: str) -> None:
        """Append events to a saved run (what the conductor saw that Locust could not) and set
        its status; atomically, like every write here."""
        path = self.path / RUN_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("requests"), dict):
            # Locust never saved one (it died before test start): a minimal run to report on.
            state = {"requests": {"warmup": 0, "measured": 0, "failed": 0}, "samples": [], "events": []}
        if not isinstance(state.get("events"), list):
            state["events"] = []
        state["events"].extend(events)
        state["status"] = status
        with atomic_text(path) as file:
            json.dump(state, file, indent=1, default=str)

    def write_reports(self, report: Report, formats: Iterable[str] | None = None) -> list[Path]:
        written = []
        from analysis.writers import WRITERS  # the writers' imports only when reports are due

        for name in formats or WRITERS:
            filename, render = WRITERS[name]
            path = self.path / filename
            write_atomic(path, lambda file, render=render: render(report, file))  # type: ignore[misc]
            written.append(path)
        return written

    def load(self) -> tuple[RunData, str]:
        """Read back what a run saved (finished or not): the data and the run's status."""
        path = self.path / RUN_FILE
        try:
            state = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise RunDirError(f"{self.path} is not a memsoak run directory (no {RUN_FILE})") from None
        except OSError as exc:
            raise RunDirError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, RecursionError):
            raise RunDirError(f"{path} is malformed: not JSON") from None
        try:
            run, status = _run_from_state(state)
        except _Malformed as exc:
            raise RunDirError(f"{path} is malformed: {exc}") from None
        run.snapshots = self.load_snapshots()
        return run, status

    def load_snapshots(self) -> list[Snapshot]:
        """Every snapshot file of the run, in order, parsed and validated."""
        snapshots = []
        for snapshot_path in sorted((self.path / SNAPSHOT_DIR).glob("[0-9][0-9][0-9]-*.json")):
            try:
                snapshots.append(loads_snapshot(snapshot_path.read_bytes()))
            except SnapshotFormatError as exc:
                raise RunDirError(f"{snapshot_path}: {exc}") from None
            except OSError as exc:
                raise RunDirError(f"cannot read {snapshot_path}: {exc.strerror or exc}") from None
        return snapshots


class _Malformed(ValueError):
    pass


def _count(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise _Malformed(f"{name} must be a non-negative integer, got {value!r}"[:200])
    return value


def _seconds(value: Any, name: str) -> float:
    if type(value) not in (int, float) or not 0 <= value < 1e300:  # NaN and inf fail too
        raise _Malformed(f"{name} must be a non-negative number, got {value!r}"[:200])
    return float(value)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{name} must be a JSON object")
    return value


def _run_from_state(state: Any) -> tuple[RunData, str]:
    """run.json, checked field by field: what `memsoak report` reads may have been edited,
    truncated or written by something else."""
    state = _object(state, "run.json")
    counts = _object(state.get("requests"), "requests")
    requests = RequestCounts(
        warmup=_count(counts.get("warmup"), "requests.warmup"),
        measured=_count(counts.get("measured"), "requests.measured"),
        failed=_count(counts.get("failed"), "requests.failed"),
        window=_count(counts.get("window", 0), "requests.window"),
        failed_warmup=_count(counts.get("failed_warmup", 0), "requests.failed_warmup"),
    )
    raw_samples = state.get("samples", [])
    if not isinstance(raw_samples, list):
        raise _Malformed("samples must be a list")
    samples = []
    for index, raw in enumerate(raw_samples):
        sample = _object(raw, f"samples[{index}]")
        samples.append(
            Sample(
                requests=_count(sample.get("requests"), f"samples[{index}].requests"),
                elapsed_s=_seconds(sample.get("elapsed_s"), f"samples[{index}].elapsed_s"),
                rss_bytes=_count(sample.get("rss_bytes"), f"samples[{index}].rss_bytes"),
                traced_bytes=_count(sample.get("traced_bytes"), f"samples[{index}].traced_bytes"),
            )
        )
    events = state.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise _Malformed("events must be a list of strings")
    status = state.get("status", "unknown")
    run = RunData(
        snapshots=[],
        samples=samples,
        requests=requests,
        parameters=_object(state.get("parameters", {}), "parameters"),
        locust_stats=_object(state.get("locust_stats", {}), "locust_stats"),
        events=list(events),
    )
    retention = state.get("retention", [])
    if isinstance(retention, list):
        # Retention paths are shown as found; a malformed entry is dropped, not fatal.
        run.retention = [doc for doc in retention if isinstance(doc, dict)]
    call_paths = state.get("call_paths", {})
    if isinstance(call_paths, dict):  # read leniently too (analysis.call_paths)
        run.call_paths = call_paths
    run.failures = _failures(state.get("failures", []))
    target_errors = state.get("target_errors", [])
    if isinstance(target_errors, list):
        run.target_errors = [line for line in target_errors if isinstance(line, str)]
    run.phases = _phases(state.get("phases", []))
    native = state.get("native", {})
    if isinstance(native, dict):  # read leniently too (analysis.native)
        run.native = native
    return run, status if isinstance(status, str) else "unknown"


def _failures(raw: Any) -> list[RequestFailure]:
    """The quoted failures, read leniently: they only word an explanation, the count decides."""
    if not isinstance(raw, list):
        return []
    return [
        RequestFailure(str(f.get("name", "")), f["status"], str(f.get("error", "")))
        for f in raw
        if isinstance(f, dict) and type(f.get("status")) is int
    ]


def _phases(raw: Any) -> list[Phase]:
    """What ran, as run.json says; an entry that is not one is dropped (it only describes)."""
    phases = []
    for doc in raw if isinstance(raw, list) else []:
        if not isinstance(doc, dict):
            continue
        name, requests, frames, took = (doc.get(k) for k in ("name", "requests", "frames", "took"))
        if isinstance(name, str) and type(requests) is int and type(frames) is int and isinstance(took, str):
            phases.append(Phase(name, requests, frames, took))
    return phases


def render_run(
    path: Path | str, thresholds: Thresholds | None = None, formats: Iterable[str] | None = None
) -> tuple[Report, list[Path]]:
    run_dir = RunDir(path)
    run, _status = run_dir.load()
    from analysis.report import build_report

    report = build_report(run, thresholds)
    return report, run_dir.write_reports(report, formats)


def default_out_dir() -> Path:
    import time

    base = Path("memsoak-out") / time.strftime("%Y%m%d-%H%M%S")
    path, suffix = base, 1
    while path.exists():
        suffix += 1
        path = base.with_name(f"{base.name}-{suffix}")
    return path
