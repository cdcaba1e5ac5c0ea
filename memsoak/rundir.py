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
from typing import Any

from analysis.model import RequestCounts, RunData, Sample, Snapshot
from analysis.report import Report, build_report
from analysis.snapshot_io import SnapshotFormatError, loads_snapshot, snapshot_from_dict
from analysis.thresholds import Thresholds
from analysis.writers import WRITERS
from memsoak.atomic import atomic_text, write_atomic
from memsoak.errors import MemsoakError

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
        doc["requests"] = requests
        snapshot = snapshot_from_dict(doc)
        sequence = len(list((self.path / SNAPSHOT_DIR).glob("*.json")))
        with atomic_text(self.path / SNAPSHOT_DIR / f"{sequence:03d}-{label}.json") as file:
            json.dump(doc, file, separators=(",", ":"))
        return snapshot

    def save_state(self, run: RunData, status: str) -> None:
        state = {
            "status": status,
            "requests": asdict(run.requests),
            "samples": [asdict(s) for s in run.samples],
            "parameters": run.parameters,
            "locust_stats": run.locust_stats,
            "events": run.events,
            "retention": run.retention,
        }
        with atomic_text(self.path / RUN_FILE) as file:
            json.dump(state, file, indent=1, default=str)

    def write_reports(self, report: Report, formats: Iterable[str] | None = None) -> list[Path]:
        written = []
        for name in formats or WRITERS:
            filename, render = WRITERS[name]
            path = self.path / filename
            write_atomic(path, lambda file, render=render: render(report, file))  # type: ignore[misc]
            written.append(path)
        return written

    def load(self) -> tuple[RunData, str]:
        """Read back what a run saved (finished or not): the data and the run's status."""
        try:
            state = json.loads((self.path / RUN_FILE).read_text(encoding="utf-8"))
            requests = RequestCounts(**state["requests"])
            samples = [Sample(**s) for s in state.get("samples", [])]
        except FileNotFoundError:
            raise RunDirError(f"{self.path} is not a memsoak run directory (no {RUN_FILE})") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RunDirError(f"{self.path / RUN_FILE} is malformed: {exc}") from None
        snapshots = []
        for path in sorted((self.path / SNAPSHOT_DIR).glob("[0-9][0-9][0-9]-*.json")):
            try:
                snapshots.append(loads_snapshot(path.read_bytes()))
            except SnapshotFormatError as exc:
                raise RunDirError(f"{path}: {exc}") from None
        events = state.get("events", [])
        run = RunData(
            snapshots=snapshots,
            samples=samples,
            requests=requests,
            parameters=state.get("parameters", {}),
            locust_stats=state.get("locust_stats", {}),
            events=[str(e) for e in events] if isinstance(events, list) else [],
        )
        retention = state.get("retention", [])
        if isinstance(retention, list):
            run.retention = [doc for doc in retention if isinstance(doc, dict)]
        return run, str(state.get("status", "unknown"))


def render_run(
    path: Path | str, thresholds: Thresholds | None = None, formats: Iterable[str] | None = None
) -> tuple[Report, list[Path]]:
    run_dir = RunDir(path)
    run, _status = run_dir.load()
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
