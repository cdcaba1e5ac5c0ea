"""report.md: short enough for a CI job summary or a pull-request comment."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TextIO

from analysis.call_paths import origin
from analysis.model import Suspect
from analysis.native import explained, site_summary
from analysis.phases import phases_line
from analysis.report import Report
from analysis.units import human_bytes

FORMAT = "markdown"
FILENAME = "report.md"
_TOP = 5


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _kept_by(suspect: Suspect) -> str:
    return _cell(suspect.retention.label) if suspect.retention is not None else ""


def _load_line(stats: dict[str, object]) -> str:
    parts = []
    for key, label in (("rps", "req/s"), ("p50_ms", "ms median"), ("p95_ms", "ms p95"), ("p99_ms", "ms p99")):
        value = stats.get(key)
        if isinstance(value, int | float):
            parts.append(f"{value:,} {label}")
    lost = stats.get("workers_lost")
    if isinstance(lost, int) and lost:
        parts.append(f"{lost} Locust worker(s) lost")
        for key, label in (("requests_resent", "re-sent to the others"), ("requests_not_made", "not made")):
            value = stats.get(key)
            if isinstance(value, int) and value:
                parts.append(f"{value:,} requests {label}")
    return ", ".join(parts)


def _evidence(report: Report, w: Callable[[str], object]) -> None:
    """Each suspect's live size at every checkpoint and its fit: what the verdict rests on."""
    w("\n### Growth per checkpoint interval\n\n")
    w(
        "| suspect | steady | fit B/request | late/overall | grew in | growth per interval |\n"
        "| --- | --- | ---: | ---: | ---: | --- |\n"
    )
    # Rows by rank in the table above: one line per site there keeps the report greppable.
    for rank, s in enumerate(report.suspects[:_TOP], start=1):
        steps = ", ".join(human_bytes(b - a) for a, b in itertools.pairwise(s.growth))
        w(
            f"| #{rank} | {'yes' if s.steady else 'no'} "
            f"| {s.fit_per_request:,.1f} | {s.late_ratio:.2f} | {s.grew_share:.0%} | {steps} |\n"
        )


def _worker_suspects(report: Report, w: Callable[[str], object]) -> None:
    """How each top suspect grew in each worker: a leak every worker shares grows in proportion
    to the requests each served; one that lives in a single worker shows up there alone."""
    if not any(row.suspects for row in report.workers):
        return
    w("\n### Suspects per worker\n\n")
    w("B/request is over the requests that worker served; share is of the merged growth.\n\n")
    w("| pid | suspect | site | grew | B/request | share |\n| ---: | --- | --- | ---: | ---: | ---: |\n")
    for row in report.workers:
        for s in row.suspects:
            w(
                f"| {row.pid} | #{s.rank} | `{_cell(s.file)}:{s.line}` | {human_bytes(s.size_diff)} "
                f"| {s.bytes_per_request:,.1f} | {s.share:.0%} |\n"
            )


def _native(report: Report, w: Callable[[str], object]) -> None:
    window = report.native
    if window is None:
        return
    w(
        f"\n## Native sites\n\nmemray's native window: {window.requests:,} requests; it "
        f"{explained(window)}.\n\n"
    )
    if not window.sites:
        w("No native site above the floor.\n")
        return
    w("| site | B/request | blocks/request |\n| --- | ---: | ---: |\n")
    for site in window.sites[:_TOP]:
        per_request = f"{site.bytes_per_request:,.1f} | {site.count_per_request:,.2f}"
        w(f"| {_cell(site_summary(site))} | {per_request} |\n")
    w("\nStack of the top native site (innermost first):\n\n```\n")
    for frame in window.sites[0].stack:
        w(f"  {frame.where()}\n")
    w("```\n")


def render(report: Report, file: TextIO) -> None:
    verdict = report.verdict
    requests = report.requests
    w = file.write
    w(f"# memsoak: **{verdict.kind}**\n\n")
    w(f"{verdict.explanation}\n\n")
    w(f"Rule `{verdict.rule}`, confidence {verdict.confidence:.2f}.\n\n")
    w("| | start | end | per request |\n| --- | ---: | ---: | ---: |\n")
    for name, trend in (("RSS", report.rss), ("traced (tracemalloc)", report.traced)):
        w(
            f"| {name} | {human_bytes(trend.start)} | {human_bytes(trend.end)} "
            f"| {trend.per_request:,.1f} B |\n"
        )
    w(
        f"\nRequests: {requests.measured:,} measured, {requests.warmup:,} warm-up, "
        f"{requests.failed:,} failed.\n"
    )
    ran = phases_line(report.phases)
    if ran:
        w(f"What ran: {ran}.\n")
    load = _load_line(report.locust_stats)
    if load:
        w(f"Load (Locust): {load}.\n")
    if report.suspects:
        w("\n## Top suspects\n\n| site | code | B/request | objects/request | grew | kept by |\n")
        w("| --- | --- | ---: | ---: | ---: | --- |\n")
        for s in report.suspects[:_TOP]:
            site = f"`{s.file}:{s.line}`"
            if s.user_frame:
                site += f" (from `{s.user_frame.file}:{s.user_frame.line}`)"
            kept = _kept_by(s)
            w(
                f"| {site} | `{_cell(s.code)}` | {s.bytes_per_request:,.1f} "
                f"| {s.objects_per_request:,.2f} | {human_bytes(s.size_diff)} | {kept} |\n"
            )
        _evidence(report, w)
        top = report.suspects[0]
        if top.retention is not None:
            w(f"\nWhat keeps the top suspect alive ({top.retention.kind}): {_cell(top.retention.summary)}\n")
            if len(top.members) > 1:
                w(f"\nSites this root keeps ({len(top.members)}):\n\n")
                for m in top.members:
                    w(f"- `{m.file}:{m.line}` {m.bytes_per_request:,.1f} B/request\n")
        source = origin(top.paths_seen, top.path_kept)
        w(f"\nTraceback of the top suspect (innermost last){f'; {source}' if source else ''}:\n\n```\n")
        for frame in top.traceback:
            w(f'  File "{frame.file}", line {frame.line}, in {frame.function}\n')
            if frame.code:
                w(f"    {frame.code}\n")
        w("```\n")
    _native(report, w)
    if report.workers:
        w("\n## Target workers\n\nSnapshots and totals are summed over these processes; RSS counts pages ")
        w("they share once per worker.\n\n")
        w("| pid | requests | RSS start | RSS end | traced start | traced end |\n")
        w("| ---: | ---: | ---: | ---: | ---: | ---: |\n")
        for row in report.workers:
            w(
                f"| {row.pid} | {row.requests_served:,} | {human_bytes(row.rss_start)} "
                f"| {human_bytes(row.rss_end)} | {human_bytes(row.traced_start)} "
                f"| {human_bytes(row.traced_end)} |\n"
            )
        total_start = sum(row.rss_start for row in report.workers)
        total_end = sum(row.rss_end for row in report.workers)
        w(f"| total | | {human_bytes(total_start)} | {human_bytes(total_end)} | | |\n")
        _worker_suspects(report, w)
    if report.events:
        w("\n## Events\n\n")
        for event in report.events:
            w(f"- {_cell(event)}\n")
