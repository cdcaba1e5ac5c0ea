"""report.html: one self-contained page a person reads (no CDN, no script, opens offline).

Charts are drawn by matplotlib into SVG strings in memory and inlined, so the page needs nothing
but itself. Only the object-oriented `Figure` API is used, never pyplot: no GUI backend is ever
loaded and no global figure state is touched. Text stays text in the SVG (`svg.fonttype: none`)
so it is small, selectable and rendered in the page's own font.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from analysis.call_paths import origin
from analysis.report import Report, Suspect
from analysis.trend import Trend
from analysis.units import human_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMAT = "html"
FILENAME = "report.html"
TEMPLATE = "report.html.j2"
TOP_SUSPECTS_CHARTED = 5
MIB = 1024 * 1024
_RSS_COLOUR = "#c0392b"
_TRACED_COLOUR = "#2471a3"
_SUSPECT_COLOURS = ("#c0392b", "#2471a3", "#27ae60", "#8e44ad", "#d68910")


def _svg(figure: Figure, salt: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    # A fixed salt makes the SVG's ids repeatable (same report, same bytes); a different one per
    # chart keeps ids unique across the charts inlined in one page.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: it is inlined in HTML


def _figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.grid(True, color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure, axes


def _intercept(points: Sequence[tuple[int, int]], slope: float) -> float:
    """The intercept that goes with a robust slope: the median residual (as Theil-Sen does)."""
    return statistics.median(y - slope * x for x, y in points)


def _fitted_line(axes: Axes, points: Sequence[tuple[int, int]], trend: Trend, colour: str, name: str) -> None:
    if len(points) < 2 or trend.method == "none":
        return
    xs = [min(x for x, _ in points), max(x for x, _ in points)]
    b = _intercept(points, trend.per_request)
    axes.plot(
        xs,
        [(b + trend.per_request * x) / MIB for x in xs],
        linestyle="--",
        linewidth=1.2,
        color=colour,
        alpha=0.8,
        label=f"{name} fit: {trend.per_request:,.0f} B/request",
    )


def memory_chart(report: Report) -> str:
    """RSS and traced memory against measured requests: samples as lines, checkpoints as dots,
    the fitted slope dashed, each checkpoint marked by a vertical line."""
    figure, axes = _figure()
    series = (
        ("RSS", "rss_bytes", report.rss, _RSS_COLOUR),
        ("traced", "traced_bytes", report.traced, _TRACED_COLOUR),
    )
    for checkpoint in report.checkpoints:
        axes.axvline(checkpoint.requests, color="#999999", linewidth=0.7, linestyle=":")
    for name, attribute, trend, colour in series:
        samples = sorted((s.requests, int(getattr(s, attribute))) for s in report.samples)
        checkpoints = [(c.requests, int(getattr(c, attribute))) for c in report.checkpoints]
        if samples:
            axes.plot(
                [x for x, _ in samples],
                [y / MIB for _, y in samples],
                color=colour,
                linewidth=1.4,
                label=f"{name} (samples)",
            )
        if checkpoints:
            axes.plot(
                [x for x, _ in checkpoints],
                [y / MIB for _, y in checkpoints],
                linestyle="none",
                marker="o",
                markersize=5,
                color=colour,
                label=f"{name} at checkpoints",
            )
        _fitted_line(axes, sorted(samples + checkpoints), trend, colour, name)
    axes.set_xlabel("measured requests")
    axes.set_ylabel("MiB")
    axes.set_ylim(bottom=0)  # from zero, so growth is seen at its true proportion
    axes.set_title("Memory of the target against measured requests", loc="left", fontsize=11)
    if axes.lines:
        # Beside the plot, not on it: the lines start at the top left and end at the top right.
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _svg(figure, "memsoak-memory")


def suspects_chart(report: Report) -> str:
    """Live size of each top suspect at each snapshot (baseline first)."""
    figure, axes = _figure()
    requests = [c.requests for c in report.checkpoints]
    for index, suspect in enumerate(report.suspects[:TOP_SUSPECTS_CHARTED]):
        points = list(zip(requests, suspect.growth, strict=False))
        if not points:
            continue
        axes.plot(
            [x for x, _ in points],
            [y / MIB for _, y in points],
            marker="o",
            markersize=4,
            linewidth=1.4,
            color=_SUSPECT_COLOURS[index % len(_SUSPECT_COLOURS)],
            label=f"#{index + 1} {Path(suspect.file).name}:{suspect.line}",
        )
    axes.set_xlabel("measured requests")
    axes.set_ylabel("live MiB")
    axes.set_ylim(bottom=0)
    axes.set_title("Live size of the top suspects at each snapshot", loc="left", fontsize=11)
    if axes.lines:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _svg(figure, "memsoak-suspects")


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
        "traceback_origin": origin(suspect.paths_seen),
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
        "locust_stats": _stats_rows(report.locust_stats),
        "workers_rss": (
            sum(row.rss_start for row in report.workers),
            sum(row.rss_end for row in report.workers),
        ),
    }


def preload() -> None:
    """Import what rendering needs (matplotlib alone takes most of a second), ahead of time."""
    import jinja2  # noqa: F401
    import markupsafe  # noqa: F401
    import matplotlib.backends.backend_svg
    import matplotlib.figure  # noqa: F401


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
    # The SVG comes from matplotlib, not from the run's data: every label in it is escaped by
    # matplotlib's SVG writer, so it can go in as markup.
    values["memory_svg"] = Markup(values["memory_svg"])
    values["suspects_svg"] = Markup(values["suspects_svg"])
    file.write(environment.get_template(TEMPLATE).render(values))
