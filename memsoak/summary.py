"""The few lines a person reads in the terminal at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from analysis.native import site_summary
from analysis.report import Report
from analysis.units import human_bytes


def summary_lines(report: Report, paths: Sequence[Path]) -> list[str]:
    verdict = report.verdict
    requests = report.requests
    lines = [
        f"memsoak: verdict {verdict.kind.upper()} (confidence {verdict.confidence:.2f}, rule {verdict.rule})",
        f"memsoak: {verdict.explanation}",
        f"memsoak: {requests.measured:,} measured requests ({requests.warmup:,} warm-up, "
        f"{requests.failed:,} failed); RSS {human_bytes(report.rss.start)} -> "
        f"{human_bytes(report.rss.end)}, {report.rss.per_request:,.0f} B/request",
    ]
    for suspect in report.suspects[:3]:
        lines.append(
            f"memsoak: suspect {suspect.file}:{suspect.line}  {suspect.code}  "
            f"{suspect.bytes_per_request:,.0f} B/request, {human_bytes(suspect.size_diff)} in all"
        )
    if report.native is not None:
        for site in report.native.sites[:3]:
            per_request = f"{site.bytes_per_request:,.0f} B/request"
            lines.append(f"memsoak: native site {site_summary(site)}  {per_request}")
    held = report.suspects[0].retention if report.suspects else None
    if held is not None and held.found:
        lines.append(f"memsoak: held by {held.summary}")
    for event in report.events:
        if "failed" in event or "stopped" in event:
            lines.append(f"memsoak: event: {event}")
    if paths:
        lines.append(f"memsoak: reports: {', '.join(str(p) for p in paths)}")
    return lines
