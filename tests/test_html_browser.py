"""report.html in a real browser, from a real run: the seed leak under `memsoak run`.

The same run checks what `memsoak run` shows in the terminal and that `--format` picks writers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import browser_page
from tests.conftest import run_process

MEASURED = 800


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("seed") / "out"
    result = run_process(
        [
            sys.executable,
            "-m",
            "memsoak",
            "run",
            "--app",
            "targets.seed_leak.app:app",
            "--requests",
            str(MEASURED),
            "--warmup",
            "100",
            "--checkpoints",
            "4",
            "--format",
            "html,junit,json",
            "--out",
            str(out),
        ],
        cwd=out.parent,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_run_writes_only_the_chosen_formats(seed_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = seed_run
    assert {p.name for p in out.glob("report.*")} == {"report.html", "report.json"}
    assert (out / "junit.xml").is_file()
    assert not (out / "series.csv").exists() and not (out / "report.md").exists()


def test_terminal_shows_progress_then_a_summary(
    seed_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, result = seed_run
    stdout = result.stdout
    # The plugin's machine-readable lines are rendered, never shown raw.
    assert "memsoak-progress" not in stdout and "memsoak-summary" not in stdout
    assert "memsoak-progress" in (out / "locust.log").read_text()
    assert "checkpoint snapshot at 400 requests" in stdout  # events scroll past as they happen
    assert "verdict LEAK" in stdout
    suspects = stdout[stdout.index("top suspects") :]
    assert "fetchuserdata.py:6" in suspects and "users_list.extend(data)" in suspects
    for name in ("report.html", "junit.xml", "report.json"):
        assert f"memsoak: report {out / name}" in stdout


def test_html_report_in_headless_chromium(
    seed_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    out, _ = seed_run
    with browser_page() as (page, errors):
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        assert page.locator("#verdict").inner_text().strip().lower() == "leak"
        assert "fetchuserdata.py:6" in page.locator("#verdict-sentence").inner_text()
        for chart in ("#memory-chart svg", "#suspects-chart svg"):
            box = page.locator(chart).bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 150, (chart, box)
        # The charts drew data, not just axes: a line per series, a dot per checkpoint.
        assert page.locator("#memory-chart svg polyline").count() >= 3
        assert page.locator("#memory-chart svg circle").count() > 10
        rows = page.locator("#suspects tbody tr.suspect")
        assert rows.count() >= 1
        first = rows.nth(0)
        assert "fetchuserdata.py:6" in first.locator("td").nth(1).inner_text()
        assert first.locator("td").nth(2).inner_text().strip() == "users_list.extend(data)"
        folded = page.locator("#suspects tbody tr.traceback").nth(0)
        traceback = folded.locator("details pre")
        assert not traceback.is_visible()  # folded until asked for
        folded.locator("details summary").click()
        assert traceback.is_visible() and "fetchuserdata.py" in traceback.inner_text()
        stats = page.locator("#locust-stats").inner_text()
        assert "requests/s" in stats and "95th percentile" in stats
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
