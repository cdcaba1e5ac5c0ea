"""The terminal side of `memsoak run`: the plugin's lines, rendered with rich."""

from __future__ import annotations

import io
import json

from rich.console import Console

from memsoak.progress import PROGRESS, SUMMARY, TerminalView, progress_line, summary_line
from tests.test_writers import leak_run


def _view() -> tuple[TerminalView, io.StringIO]:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140, color_system=None, soft_wrap=True)
    return TerminalView(console), buffer


def test_progress_lines_drive_a_bar_through_warm_up_then_measured() -> None:
    view, buffer = _view()
    with view:
        line = progress_line(
            completed=40, warmup=100, requests=1000, rps=123.4, rss_bytes=None, traced_bytes=None
        )
        assert line.startswith(PROGRESS) and json.loads(line[len(PROGRESS) :])["completed"] == 40
        assert view.feed(line + "\n")
        view.progress.refresh()
        assert "warm-up" in buffer.getvalue() and "40/100" in buffer.getvalue()
        assert "target RSS —" in buffer.getvalue()
        view.feed(
            progress_line(
                completed=600,
                warmup=100,
                requests=1000,
                rps=250,
                rss_bytes=150 * 2**20,
                traced_bytes=60 * 2**20,
            )
        )
        view.progress.refresh()
        shown = buffer.getvalue()
        assert "measured" in shown and "500/1000" in shown and "250 req/s" in shown
        assert "target RSS 150.0 MiB, traced 60.0 MiB" in shown
        assert view.feed("memsoak: checkpoint snapshot at 500 requests\n")
        assert not view.feed("[2026-01-01] locust's own log line\n")
    assert "checkpoint snapshot at 500 requests" in buffer.getvalue()


def test_summary_line_renders_a_table_with_the_reports() -> None:
    from pathlib import Path

    from analysis.report import build_report

    report = build_report(leak_run())
    line = summary_line(report, [Path("/out/report.html"), Path("/out/junit.xml")])
    assert line.startswith(SUMMARY)
    view, buffer = _view()
    with view:
        view.feed(line + "\n")
    shown = buffer.getvalue()
    assert "memsoak: verdict LEAK" in shown
    table = shown[shown.index("top suspects") :]
    assert "fetchuserdata.py:6" in table and "users_list.extend(data)" in table and "40,000" in table
    assert "memsoak: report /out/report.html" in shown and "memsoak: report /out/junit.xml" in shown
