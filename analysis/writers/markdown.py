"""report.md: short enough for a CI job summary or a pull-request comment."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TextIO

from analysis.report import Report
from analysis.units import human_bytes

FORMAT = "markdown"
FILENAME = "report.md"
_TOP = 5


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _evidence(report: Report, w: Callable[[str], object]) -> None:
    """Each suspect's live size at every checkpoint and its fit: what the verdict rests on."""
    w("\n### Growth per checkpoint interval\n\n")
    w(
        "| site | steady | fit B/request | late/overall | grew in | growth per interval |\n"
        "| --- | --- | ---: | ---: | ---: | --- |\n"
    )
    for s in report.suspects[:_TOP]:
        steps = ", ".join(human_bytes(b - a) for a, b in itertools.pairwise(s.growth))
        w(
            f"| `{s.file.rsplit('/', 1)[-1]}:{s.line}` | {'yes' if s.steady else 'no'} "
            f"| {s.fit_per_request:,.1f} | {s.late_ratio:.2f} | {s.grew_share:.0%} | {steps} |\n"
        )


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
    if report.suspects:
        w("\n## Top suspects\n\n| site | code | B/request | objects/request | grew |\n")
        w("| --- | --- | ---: | ---: | ---: |\n")
        for s in report.suspects[:_TOP]:
            site = f"`{s.file}:{s.line}`"
            if s.user_frame:
                site += f" (from `{s.user_frame.file}:{s.user_frame.line}`)"
            w(
                f"| {site} | `{_cell(s.code)}` | {s.bytes_per_request:,.1f} "
                f"| {s.objects_per_request:,.2f} | {human_bytes(s.size_diff)} |\n"
            )
        _evidence(report, w)
        top = report.suspects[0]
        if top.retention is not None:
            w(f"\nWhat keeps the top suspect alive: {_cell(top.retention.summary)}\n")
        w("\nTraceback of the top suspect (innermost last):\n\n```\n")
        for frame in top.traceback:
            w(f'  File "{frame.file}", line {frame.line}, in {frame.function}\n')
            if frame.code:
                w(f"    {frame.code}\n")
        w("```\n")
    if report.events:
        w("\n## Events\n\n")
        for event in report.events:
            w(f"- {_cell(event)}\n")
