"""report.html: one self-contained page a person reads (no CDN, no script, opens offline).

Charts are SVG drawn by `svg_chart` and inlined, so the page needs nothing but itself; their
text stays text, small, selectable and in the page's own font.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from analysis.call_paths import origin
from analysis.model import Suspect
from analysis.native import explained, site_summary
from analysis.phases import phases_line
from analysis.report import Report
from analysis.trend import Trend
from analysis.units import human_bytes
from analysis.writers.svg_chart import Series, line_chart

FORMAT = "html"
FILENAME = "report.html"
TEMPLATE = "report.html.j2"
TOP_SUSPECTS_CHARTED = 5
MIB = 1024 * 1024
_RSS_COLOUR = "#c0392b"
_TRACED_COLOUR = "#2471a3"
_SUSPECT_COLOURS = ("#c0392b", "#2471a3", "#27ae60", "#8e44ad", "#d68910")


def _intercept(points: Sequence[tuple[int, int]], slope: float) -> float:
    """The intercept that goes with a robust slope: the median residual (as Theil-Sen does)."""
    return statistics.median(y - slope * x for x, y in points)


def _fitted_line(points: Sequence[tuple[int, int]], trend: Trend, colour: str, name: str) -> list[Series]:
    if len(points) < 2 or trend.method == "none":
        return []
    xs = (min(x for x, _ in points), max(x for x, _ in points))
    b = _intercept(points, trend.per_request)
    return [
        Series(
            f"{name} fit: {trend.per_request:,.0f} B/request",
            tuple((x, (b + trend.per_request * x) / MIB) for x in xs),
            colour,
            dashed=True,
        )
    ]


def memory_chart(report: Report) -> str:
    """RSS and traced memory against measured requests: samples as lines, checkpoints as dots,
    the fitted slope dashed, each checkpoint marked by a vertical line."""
    series: list[Series] = []
    for name, attribute, trend, colour in (
        ("RSS", "rss_bytes", report.rss, _RSS_COLOUR),
        ("traced", "traced_bytes", report.traced, _TRACED_COLOUR),
    ):
        samples = sorted((s.requests, int(getattr(s, attribute))) for s in report.samples)
        checkpoints = [(c.requests, int(getattr(c, attribute))) for c in report.checkpoints]
        if samples:
            series.append(Series(f"{name} (samples)", tuple((x, y / MIB) for x, y in samples), colour))
        if checkpoints:
            points = tuple((x, y / MIB) for x, y in checkpoints)
            series.append(Series(f"{name} at checkpoints", points, colour, line=False, markers=True))
        series += _fitted_line(sorted(samples + checkpoints), trend, colour, name)
    return line_chart(
        "Memory of the target against measured requests",
        "measured requests",
        "MiB",
        series,
        vlines=[c.requests for c in report.checkpoints],
    )


def suspects_chart(report: Report) -> str:
    """Live size of each top suspect at each snapshot (baseline first)."""
    requests = [c.requests for c in report.checkpoints]
    series = [
        Series(
            f"#{index + 1} {Path(suspect.file).name}:{suspect.line}",
            tuple((x, y / MIB) for x, y in zip(requests, suspect.growth, strict=False)),
            _SUSPECT_COLOURS[index % len(_SUSPECT_COLOURS)],
            markers=True,
        )
        for index, suspect in enumerate(report.suspects[:TOP_SUSPECTS_CHARTED])
    ]
    return line_chart(
        "Live size of the top suspects at each snapshot", "measured requests", "live MiB", series
    )


def _suspect_row(index: int, suspect: Suspect) -> dict[str, Any]:
    return {
        "rank": index + 1,
        "file": suspect.file,
        "name": f"{Path(suspect.file).name}:{suspect.line}",
        "line": suspect.line,
        "code": suspect.code,
        "bytes_per_request": suspect.bytes_per_request,
        "objects_per_request": suspect.objects_per_request,
        "size_diff": human_bytes(suspect.size_diff),
        "count_diff": suspect.count_diff,
        "steady": getattr(suspect, "steady", None),
        "user_frame": suspect.user_frame,
        "traceback": suspect.traceback,
        "traceback_origin": origin(suspect.paths_seen, suspect.path_kept),
        "retention": suspect.retention,
        "members": suspect.members if len(suspect.members) > 1 else (),
    }


def _stats_rows(stats: dict[str, object]) -> list[tuple[str, object]]:
    labels = {
        "requests": "requests",
        "failures": "failures",
        "rps": "requests/s",
        "avg_ms": "average (ms)",
        "p50_ms": "median (ms)",
        "p95_ms": "95th percentile (ms)",
        "p99_ms": "99th percentile (ms)",
        "max_ms": "max (ms)",
    }
    rows = [(labels[k], _number(stats[k])) for k in labels if k in stats]
    rows.extend((k, _number(v)) for k, v in stats.items() if k not in labels)
    return rows


def _number(value: object) -> object:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return value


def context(report: Report) -> dict[str, Any]:
    return {
        "report": report,
        "verdict": report.verdict,
        "human_bytes": human_bytes,
        "memory_svg": memory_chart(report) if report.checkpoints or report.samples else "",
        "suspects_svg": suspects_chart(report) if report.suspects else "",
        "suspects": [_suspect_row(i, s) for i, s in enumerate(report.suspects)],
        "parameters": sorted(report.parameters.items()),
        "phases": phases_line(report.phases),
        "locust_stats": _stats_rows(report.locust_stats),
        "native": report.native,
        "native_explained": explained(report.native) if report.native else "",
        "native_sites": [(site_summary(s), s) for s in report.native.sites] if report.native else [],
        "workers_rss": (
            sum(row.rss_start for row in report.workers),
            sum(row.rss_end for row in report.workers),
        ),
    }


def preload() -> None:
    """Import what rendering needs, ahead of time."""
    import jinja2  # noqa: F401
    import markupsafe  # noqa: F401


def render(report: Report, file: TextIO) -> None:
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    values = context(report)
    # svg_chart escapes every label it writes, so its SVG can go in as markup.
    values["memory_svg"] = Markup(values["memory_svg"])
    values["suspects_svg"] = Markup(values["suspects_svg"])
    file.write(environment.get_template(TEMPLATE).render(values))
