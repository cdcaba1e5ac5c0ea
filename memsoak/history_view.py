"""`memsoak history` in the terminal: the runs of each scenario and their bytes-per-request trend."""

from __future__ import annotations

import time
from collections.abc import Sequence

from memsoak.history import RunRecord

SPARKS = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 24


def sparkline(values: Sequence[float]) -> str:
    """One character per value, scaled from 0 (or the lowest value, when negative) to the highest."""
    if not values:
        return ""
    low, high = min(0.0, *values), max(values)
    if high <= low:
        return SPARKS[0] * len(values)
    top = len(SPARKS) - 1
    return "".join(SPARKS[round((v - low) / (high - low) * top)] for v in values)


def _bar(value: float, high: float) -> str:
    if high <= 0 or value <= 0:
        return ""
    eighths = round(value / high * BAR_WIDTH * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def history_lines(records: Sequence[RunRecord], limit: int) -> list[str]:
    if not records:
        return ["memsoak: no runs recorded yet"]
    by_scenario: dict[str, list[RunRecord]] = {}
    for record in records:
        by_scenario.setdefault(record.scenario, []).append(record)
    lines: list[str] = []
    # The scenario run most recently comes last, next to the prompt.
    for scenario, runs in sorted(by_scenario.items(), key=lambda item: item[1][-1].id):
        shown = runs[-limit:]
        values = [r.bytes_per_request or 0.0 for r in shown]
        high = max([*values, 0.0])
        lines.append(f"scenario {scenario}: {len(runs)} run(s), target {shown[-1].target}")
        lines.append(f"  traced bytes/request, oldest to newest: {sparkline(values)}  (max {high:,.0f})")
        lines.append(
            f"  {'run':>5}  {'started (UTC)':<16}  {'revision':<12}  {'status':<11}  {'verdict':<12}"
            f"  {'requests':>9}  {'B/request':>10}  {'RSS B/req':>10}  trend / top suspect"
        )
        for record, value in zip(shown, values, strict=True):
            started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record.started_at))
            lines.append(
                f"  {record.id:>5}  {started:<16}  {record.revision[:12]:<12}  {record.status:<11}"
                f"  {record.verdict or '-':<12}  {record.measured_requests:>9,}"
                f"  {_number(record.bytes_per_request):>10}  {_number(record.rss_bytes_per_request):>10}"
                f"  {_bar(value, high)}"
            )
            if record.suspects:
                top = record.suspects[0]
                lines.append(
                    f"  {'':>5}  top suspect {top.get('file')}:{top.get('line')}"
                    f"  {top.get('bytes_per_request', 0):,.0f} B/request"
                    + ("" if top.get("steady", True) else " (stopped growing)")
                )
        lines.append("")
    return lines[:-1]
