"""A "Memory" tab in Locust's web UI: the target's RSS and traced memory, and the current top
suspects, while the run goes.

It uses only Locust's own extension points: `extended_tabs` and `extended_tables` in the web
UI's template arguments declare the tab and its columns, and an `extended_stats` entry added to
the `/stats/requests` JSON (which the page polls every couple of seconds) carries the rows. The
rows come from what the plugin already gathered (samples and snapshots); the tab never asks the
agent for anything, so keeping it open costs the target nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from analysis.model import RunData, Sample, Snapshot, Suspect
from analysis.report import Report
from analysis.suspects import find_suspects
from analysis.thresholds import Thresholds
from analysis.units import human_bytes
from memsoak.locust.options import Settings

if TYPE_CHECKING:
    from flask import Response
    from locust.web import WebUI


KEY = "memsoak-memory"
TITLE = "Memory"
TOP = 10
# Single-word keys: the web UI camel-cases keys, and these need no translating either way.
# Not "name": the web UI sorts a table's rows by their "name" unless a header is clicked, so each
# row's hidden "name" is its position, which keeps the order below (progress, memory, suspects).
COLUMNS = (
    ("what", "What"),
    ("value", "Now"),
    ("rate", "Per measured request"),
    ("detail", "Detail"),
)


class Progress(Protocol):
    @property
    def completed(self) -> int: ...


class RunView(Protocol):
    """What the tab reads of the plugin: what it gathered, never the agent."""

    settings: Settings
    report: Report | None

    @property
    def data(self) -> RunData: ...
    @property
    def gate(self) -> Progress | None: ...
    def latest_reading(self) -> Sample | Snapshot | None: ...
    def latest_memory(self) -> tuple[int | None, int | None]: ...
    def snapshots_for_analysis(self, thresholds: Thresholds) -> list[Snapshot]: ...


class MemoryTab:
    def __init__(self, plugin: RunView) -> None:
        self.plugin = plugin
        self._suspects: tuple[Suspect, ...] = ()
        self._suspects_for = 0  # how many snapshots the cached suspects were computed from

    def install(self, web_ui: WebUI) -> None:
        # Locust merges its own template arguments over these on every page load, keeping ours.
        web_ui.template_args["extended_tabs"] = [{"title": TITLE, "key": KEY}]
        web_ui.template_args["extended_tables"] = [
            {"key": KEY, "structure": [{"key": key, "title": title} for key, title in COLUMNS]}
        ]
        if web_ui.app is not None:
            web_ui.app.after_request(self._extend_stats)

    def _extend_stats(self, response: Response) -> Response:
        from flask import request

        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        document = response.get_json(silent=True)
        if not isinstance(document, dict):
            return response
        document["extended_stats"] = [{"key": KEY, "data": self.rows()}]
        response.set_data(json.dumps(document))
        return response

    def rows(self) -> list[dict[str, str]]:
        plugin = self.plugin
        settings = plugin.settings
        data = plugin.data
        gate = plugin.gate
        report = plugin.report
        rows: list[dict[str, str]] = []
        if report is not None and gate is None:
            verdict = report.verdict
            rows.append(_row("verdict", verdict.kind.upper(), "", verdict.explanation))
        completed = gate.completed if gate is not None else data.requests.warmup + data.requests.measured
        if completed < settings.warmup:
            progress = f"{completed:,} of {settings.warmup:,} warm-up"
        else:
            progress = f"{completed - settings.warmup:,} of {settings.requests:,} measured"
        rows.append(_row("requests", progress, "", f"{len(data.snapshots)} snapshots taken"))
        baseline = data.snapshots[0] if data.snapshots else None
        rss, traced = plugin.latest_memory()
        latest = plugin.latest_reading()
        for name, now, attribute in (("RSS", rss, "rss_bytes"), ("traced memory", traced, "traced_bytes")):
            if now is None:
                rows.append(_row(name, "waiting for the baseline snapshot", "", ""))
                continue
            rate, detail = "", ""
            if baseline is not None and latest is not None:
                start: int = getattr(baseline, attribute)
                detail = f"{human_bytes(start)} at the baseline"
                if latest.requests > 0:
                    rate = f"{(now - start) / latest.requests:+,.0f} B"
            rows.append(_row(name, human_bytes(now), rate, detail))
        for index, suspect in enumerate(self.suspects()[:TOP]):
            rows.append(
                _row(
                    f"suspect #{index + 1} {Path(suspect.file).name}:{suspect.line}",
                    f"+{human_bytes(suspect.size_diff)}",
                    f"{suspect.bytes_per_request:,.0f} B",
                    suspect.code or suspect.file,
                )
            )
        for position, row in enumerate(rows):
            row["name"] = f"{position:03d}"
        return rows

    def suspects(self) -> tuple[Suspect, ...]:
        """Suspects between the baseline and the latest snapshot, recomputed only when a new
        snapshot has arrived (the page polls far more often than snapshots are taken)."""
        report = self.plugin.report
        if report is not None and self.plugin.gate is None:
            return report.suspects
        count = len(self.plugin.data.snapshots)
        if count != self._suspects_for:
            self._suspects_for = count
            thresholds = Thresholds()
            snapshots = self.plugin.snapshots_for_analysis(thresholds)
            measured = snapshots[-1].requests if snapshots else 0
            self._suspects = find_suspects(snapshots, measured, thresholds) if len(snapshots) >= 2 else ()
        return self._suspects


def _row(what: str, value: str, rate: str, detail: str) -> dict[str, str]:
    return {"what": what, "value": value, "rate": rate, "detail": detail}
