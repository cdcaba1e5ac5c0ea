"""Live progress and the end-of-run summary in the terminal of `memsoak run`.

The plugin runs inside the Locust subprocess and `memsoak run` owns the terminal, so they talk
through Locust's stdout, one line per message: the plugin prints machine-readable lines
(`memsoak-progress {json}` every half second, `memsoak-summary {json}` at the end) and the CLI
renders them with rich — a progress bar that redraws in place, then a summary table. Lines are
used rather than polling run.json because they arrive the moment they are printed and need no
file shared between the two processes. Plain `locust` never sees these lines: the plugin only
prints them when `memsoak run` asks for them (MEMSOAK_PROGRESS=1 in Locust's environment).

Both sides live here so the format has one owner. rich is imported only on the CLI side.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.units import human_bytes

if TYPE_CHECKING:  # `memsoak run` imports this before it starts Locust: analysis waits
    from analysis.report import Report

PROGRESS = "memsoak-progress "
SUMMARY = "memsoak-summary "
ENV = "MEMSOAK_PROGRESS"
TOP = 5


# -- the plugin's side --------------------------------------------------------------------------


def progress_line(
    *, completed: int, warmup: int, requests: int, rps: float, rss_bytes: int | None, traced_bytes: int | None
) -> str:
    return PROGRESS + json.dumps(
        {
            "completed": completed,
            "warmup": warmup,
            "requests": requests,
            "rps": round(rps, 1),
            "rss_bytes": rss_bytes,
            "traced_bytes": traced_bytes,
        },
        separators=(",", ":"),
    )


def summary_line(report: Report, paths: Sequence[Path]) -> str:
    return SUMMARY + json.dumps(summary_doc(report, paths), separators=(",", ":"))


def summary_doc(report: Report, paths: Sequence[Path]) -> dict[str, Any]:
    """What the end-of-run summary shows, as plain JSON-able data."""
    verdict = report.verdict
    top = report.suspects[0] if report.suspects else None
    return {
        "verdict": verdict.kind,
        "confidence": verdict.confidence,
        "rule": verdict.rule,
        "explanation": verdict.explanation,
        "requests": {
            "measured": report.requests.measured,
            "warmup": report.requests.warmup,
            "failed": report.requests.failed,
        },
        "rss": [report.rss.start, report.rss.end, report.rss.per_request],
        "traced": [report.traced.start, report.traced.end, report.traced.per_request],
        "suspects": [
            {
                "file": s.file,
                "line": s.line,
                "code": s.code,
                "bytes_per_request": s.bytes_per_request,
                "size_diff": s.size_diff,
                "kept_by": s.retention.label if s.retention else "",
            }
            for s in report.suspects[:TOP]
        ],
        "kept_by": top.retention.summary if top is not None and top.retention is not None else "",
        "events": [e for e in report.events if "failed" in e or "stopped" in e],
        "reports": [str(p) for p in paths],
    }


# -- the CLI's side -----------------------------------------------------------------------------


class TerminalView:
    """Renders what the plugin prints: other `memsoak` lines scroll above a live progress bar."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if console is None:
            console = Console(soft_wrap=True, highlight=False)
            if not console.is_terminal:
                # Logs and CI have no width; rich would assume 80 columns and squeeze the tables.
                console = Console(soft_wrap=True, highlight=False, width=120)
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rps]}"),
            TextColumn("{task.fields[memory]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task: Any = None
        self._phase = ""
        self.summary: dict[str, Any] | None = None

    def __enter__(self) -> TerminalView:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()
        if self.summary is not None:
            self.print_summary(self.summary)

    def feed(self, line: str) -> bool:
        """Handle one line of Locust's output; False when it is not memsoak's."""
        if line.startswith(PROGRESS):
            self._progress(json.loads(line[len(PROGRESS) :]))
        elif line.startswith(SUMMARY):
            self.summary = json.loads(line[len(SUMMARY) :])
        elif line.startswith("memsoak"):
            self.console.print(line.rstrip("\n"), markup=False)
        else:
            return False
        return True

    def _progress(self, doc: dict[str, Any]) -> None:
        completed, warmup, requests = doc["completed"], doc["warmup"], doc["requests"]
        phase, done, total = (
            ("warm-up", completed, warmup)
            if completed < warmup
            else ("measured", completed - warmup, requests)
        )
        memory = "target RSS " + (human_bytes(doc["rss_bytes"]) if doc.get("rss_bytes") else "—")
        if doc.get("traced_bytes"):
            memory += f", traced {human_bytes(doc['traced_bytes'])}"
        rps = f"{doc['rps']:,.0f} req/s"
        if self._task is None:
            self._task = self.progress.add_task(phase, total=total, completed=done, rps=rps, memory=memory)
        elif phase != self._phase:
            self.progress.reset(
                self._task, total=total, completed=done, description=phase, rps=rps, memory=memory
            )
        else:
            self.progress.update(self._task, completed=done, rps=rps, memory=memory)
        self._phase = phase

    def print_summary(self, doc: dict[str, Any]) -> None:
        from rich.table import Table

        out = self.console
        requests = doc["requests"]
        headline = (
            f"verdict {doc['verdict'].upper()} (confidence {doc['confidence']:.2f}, rule {doc['rule']})"
        )
        out.print(
            f"memsoak: {headline}",
            markup=False,
            style="bold red" if "leak" in doc["verdict"] and doc["verdict"] != "no-leak" else "bold",
        )
        out.print(f"memsoak: {doc['explanation']}", markup=False)
        numbers = Table(title="run", title_justify="left", show_edge=False)
        for column in ("", "start", "end", "per request"):
            numbers.add_column(column, justify="left" if not column else "right", no_wrap=True)
        for name, (start, end, per_request) in (("RSS", doc["rss"]), ("traced", doc["traced"])):
            numbers.add_row(name, human_bytes(start), human_bytes(end), f"{per_request:,.0f} B")
        numbers.caption = (
            f"{requests['measured']:,} measured requests, {requests['warmup']:,} warm-up, "
            f"{requests['failed']:,} failed"
        )
        out.print(numbers)
        if doc["suspects"]:
            suspects = Table(title="top suspects", title_justify="left", show_edge=False)
            suspects.add_column("site", no_wrap=True)
            suspects.add_column("code", overflow="ellipsis", no_wrap=True, max_width=50)
            suspects.add_column("B/request", justify="right", no_wrap=True)
            suspects.add_column("grew", justify="right", no_wrap=True)
            suspects.add_column("kept by", overflow="ellipsis", no_wrap=True, max_width=60)
            for s in doc["suspects"]:
                suspects.add_row(
                    f"{Path(s['file']).name}:{s['line']}",
                    s["code"],
                    f"{s['bytes_per_request']:,.0f}",
                    human_bytes(s["size_diff"]),
                    s.get("kept_by", ""),
                )
            out.print(suspects)
            if doc.get("kept_by"):
                out.print(f"memsoak: what keeps the top suspect: {doc['kept_by']}", markup=False)
        for event in doc["events"]:
            out.print(f"memsoak: event: {event}", markup=False)
        for path in doc["reports"]:
            out.print(f"memsoak: report {path}", markup=False)
