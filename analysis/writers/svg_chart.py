"""Line charts as inline SVG, drawn directly: axes with round-numbered ticks, lines, markers, a
legend beside the plot. What report.html needs and nothing more; a charting library took most
of a second to import and render at the end of every run, which is time to a verdict.

Every piece of text is escaped here, so the result can go into a page as markup. Output depends
only on the input (same chart, same bytes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 900, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 250, 34, 46  # margins around the plot area; the legend sits right
_GRID = "#dddddd"
_AXIS = "#555555"


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: tuple[tuple[float, float], ...]
    colour: str
    line: bool = True
    markers: bool = False
    dashed: bool = False


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering low..high."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, most - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step)
    last = math.ceil(high / step - 1e-9)
    return [round(n * step, 10) for n in range(first, max(last, first + 1) + 1)]


def _text(x: float, y: float, content: str, anchor: str = "start", extra: str = "", size: int = 11) -> str:
    return (
        f'<text x="{x}" y="{y}" text-anchor="{anchor}" font-family="sans-serif" font-size="{size}"{extra}>'
        f"{escape(content)}</text>"
    )


def _line(x1: float, x2: float, y1: float, y2: float, stroke: str, extra: str = "") -> str:
    return f'<line x1="{x1}" x2="{x2}" y1="{y1}" y2="{y2}" stroke="{stroke}"{extra}/>'


def _dot(x: float, y: float, colour: str) -> str:
    return f'<circle cx="{x}" cy="{y}" r="3.5" fill="{colour}"/>'


def _label(value: float) -> str:
    if abs(value) >= 1000 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Series],
    vlines: Sequence[float] = (),
) -> str:
    """An <svg> element: `series` against shared axes, y from zero (growth at its true
    proportion), dotted vertical lines at `vlines` (checkpoints)."""
    xs = [x for s in series for x, _ in s.points] + list(vlines)
    ys = [y for s in series for _, y in s.points]
    x_ticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    y_ticks = nice_ticks(0.0, max([*ys, 0.0]))
    x0, x1, y1 = x_ticks[0], x_ticks[-1], y_ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return round(LEFT + (x - x0) / (x1 - x0) * plot_w, 1)

    def py(y: float) -> float:
        return round(TOP + plot_h - y / y1 * plot_h, 1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        _text(LEFT, 18, title, size=13),
    ]
    for y in y_ticks:
        out.append(_line(LEFT, LEFT + plot_w, py(y), py(y), _GRID))
        out.append(_text(LEFT - 6, py(y) + 4, _label(y), "end"))
    for x in x_ticks:
        out.append(_line(px(x), px(x), TOP, TOP + plot_h, _GRID))
        out.append(_text(px(x), TOP + plot_h + 16, _label(x), "middle"))
    for x in vlines:
        out.append(_line(px(x), px(x), TOP, TOP + plot_h, "#999999", ' stroke-dasharray="2 3"'))
    out.append(
        f'<polyline points="{LEFT},{TOP} {LEFT},{TOP + plot_h} {LEFT + plot_w},{TOP + plot_h}" '
        f'fill="none" stroke="{_AXIS}"/>'
    )
    out.append(_text(LEFT + plot_w / 2, HEIGHT - 8, x_label, "middle"))
    out.append(_text(0, 0, y_label, "middle", f' transform="translate(14 {TOP + plot_h / 2}) rotate(-90)"'))
    for index, s in enumerate(series):
        style = ' stroke-width="1.5"' + (' stroke-dasharray="6 4"' if s.dashed else "")
        if s.line and len(s.points) >= 2:
            points = " ".join(f"{px(x)},{py(y)}" for x, y in s.points)
            out.append(f'<polyline points="{points}" fill="none" stroke="{s.colour}"{style}/>')
        if s.markers:
            out.extend(_dot(px(x), py(y), s.colour) for x, y in s.points)
        key_x, key_y = LEFT + plot_w + 14, TOP + 8 + index * 18
        if s.line:
            out.append(_line(key_x, key_x + 22, key_y, key_y, s.colour, style))
        if s.markers:
            out.append(_dot(key_x + 11, key_y, s.colour))
        out.append(_text(key_x + 28, key_y + 4, s.label))
    out.append("</svg>")
    return "\n".join(out)
