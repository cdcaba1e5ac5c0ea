"""The run history (SQLite), the regression rule, `memsoak history` and `memsoak compare`'s logic."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from analysis.compare import compare_reports
from analysis.model import Frame, RequestCounts, Suspect, Verdict
from analysis.regression import RegressionRule, judge
from analysis.report import Report
from analysis.thresholds import Thresholds
from analysis.trend import Trend
from memsoak.defaults import parse_duration
from memsoak.history import History, HistoryError
from memsoak.history_view import sparkline

REPO = Path(__file__).resolve().parent.parent


def _finish(history: History, run_id: int, bpr: float, status: str = "finished") -> None:
    history.finish(
        run_id,
        status=status,
        verdict="no-leak",
        measured=1000,
        bytes_per_request=bpr,
        rss_per_request=bpr * 2,
        suspects=[{"file": "app.py", "line": 3, "code": "x", "bytes_per_request": bpr}],
    )


def test_a_run_is_unfinished_until_it_finishes(tmp_path: Path) -> None:
    history = History(tmp_path / "deep" / "history.sqlite")
    run_id = history.start(scenario="s", target="t", revision="abc", run_dir="/runs/1", plan="8h")
    (record,) = history.runs()
    assert (record.id, record.status, record.verdict, record.plan) == (run_id, "unfinished", None, "8h")
    history.progress(run_id, measured=500, bytes_per_request=12.5, rss_per_request=40.0)
    record = history.get(run_id)
    assert (record.status, record.measured_requests, record.bytes_per_request) == ("unfinished", 500, 12.5)
    _finish(history, run_id, 20.0)
    record = history.get(run_id)
    assert record.status == "finished" and record.bytes_per_request == 20.0
    assert record.suspects[0]["file"] == "app.py"
    # A late checkpoint update cannot reopen or overwrite a finished run.
    history.progress(run_id, measured=9, bytes_per_request=1.0, rss_per_request=1.0)
    assert history.get(run_id).measured_requests == 1000


def test_previous_finished_is_per_scenario_and_skips_unfinished_runs(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite")
    ids = []
    for scenario, bpr, status in [("a", 1.0, "finished"), ("b", 2.0, "finished"), ("a", 3.0, "interrupted"),
                                  ("a", 4.0, "finished"), ("a", 5.0, None)]:  # fmt: skip
        run_id = history.start(scenario=scenario, target="t", revision="", run_dir="d", plan="p")
        if status:
            _finish(history, run_id, bpr, status)
        ids.append(run_id)
    previous = history.previous_finished("a", ids[-1], limit=10)
    assert [r.bytes_per_request for r in previous] == [1.0, 4.0]
    assert [r.id for r in history.runs("a", limit=2)] == [ids[3], ids[4]]


def test_reading_a_missing_history_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no run history"):
        History(tmp_path / "nope.sqlite").runs()
    with pytest.raises(HistoryError, match="no run 7"):
        History(tmp_path / "h.sqlite").check() or History(tmp_path / "h.sqlite").get(7)


WRITER = textwrap.dedent(
    """
    import sys
    from memsoak.history import History
    path, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    history = History(path)
    for i in range(count):
        run_id = history.start(scenario=tag, target="t", revision=str(i), run_dir=f"/{tag}/{i}", plan="p")
        history.progress(run_id, measured=i, bytes_per_request=float(i), rss_per_request=0.0)
        history.finish(run_id, status="finished", verdict="leak", measured=i + 1,
                       bytes_per_request=float(i), rss_per_request=0.0, suspects=[])
    """
)


def test_two_processes_writing_one_history_do_not_corrupt_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    count = 80
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, str(count)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("one", "two")
    ]
    for writer in writers:
        _out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = db.execute("SELECT scenario, revision, status, measured_requests FROM runs").fetchall()
    assert len(rows) == 2 * count
    for tag in ("one", "two"):
        mine = sorted(int(rev) for scenario, rev, _s, _m in rows if scenario == tag)
        assert mine == list(range(count))
    assert all(status == "finished" and measured == int(rev) + 1 for _sc, rev, status, measured in rows)


def test_regression_rule() -> None:
    steady = [100.0, 104.0, 98.0, 101.0, 99.0]
    assert not judge(5000.0, steady[:2]).judged  # too little history: no judgement, no failure
    result = judge(5000.0, steady)
    assert result.judged and result.regressed and result.baseline == 100.0
    # Within noise, 50% and 64 B/request of the median: not a regression.
    assert not judge(160.0, steady).regressed
    assert judge(170.0, steady).regressed
    # A noisy history widens the limit by 4 robust standard deviations.
    noisy = [100.0, 400.0, 150.0, 700.0, 250.0]
    assert not judge(900.0, noisy).regressed
    assert judge(2000.0, noisy).regressed
    # Only the last `window` runs count: an old leak in the history does not hide a new one.
    assert judge(1000.0, [50_000.0] * 5 + [10.0] * 10).regressed
    assert not judge(1000.0, [10.0] * 10, RegressionRule(floor=2000.0)).regressed


def _report(verdict: str, sites: dict[tuple[str, int], float]) -> Report:
    suspects = tuple(
        Suspect(file, line, "code", int(bpr * 1000), 1, bpr, 0.0, (Frame(file, line),), None, (0, 1), True)
        for (file, line), bpr in sites.items()
    )
    trend = Trend(0, 0, sum(sites.values()), 2, "two-point")
    return Report(
        verdict=Verdict(verdict, 1.0, "rule", "why"),  # type: ignore[arg-type]
        requests=RequestCounts(0, 1000, 0),
        rss=trend,
        traced=trend,
        suspects=suspects,
        checkpoints=(),
        samples=(),
        thresholds=Thresholds(),
    )


def test_compare_names_new_gone_and_changed_suspects() -> None:
    before = _report("no-leak", {("a.py", 1): 100.0, ("b.py", 2): 500.0, ("c.py", 3): 1000.0})
    after = _report("leak", {("a.py", 1): 105.0, ("b.py", 2): 5000.0, ("d.py", 4): 800.0})
    result = compare_reports(before, after)
    assert result.verdicts == ("no-leak", "leak")
    assert [(c.file, c.after) for c in result.new] == [("d.py", 800.0)]
    assert [(c.file, c.before) for c in result.gone] == [("c.py", 1000.0)]
    assert [(c.file, c.delta) for c in result.grew] == [("b.py", 4500.0)]
    assert [c.file for c in result.unchanged] == ["a.py"] and not result.shrank


def test_durations_and_sparkline() -> None:
    assert [parse_duration(t) for t in ("8h", "10m", "1h30m", "90s", "90", "1.5h")] == [
        28800, 600, 5400, 90, 90, 5400,
    ]  # fmt: skip
    for bad in ("", "8x", "h", "0s", "-5m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert sparkline([0, 50, 100]) == "▁▅█"
    assert sparkline([3, 3]) == "██" and sparkline([0, 0]) == "▁▁"  # the scale starts at 0


def test_history_command_lists_runs_with_their_trend(tmp_path: Path, memsoak) -> None:
    history = History(tmp_path / "h.sqlite")
    for bpr in (10.0, 12.0, 900.0):
        _finish(history, history.start(scenario="nightly", target="app:app", revision="r1",
                                       run_dir="d", plan="8h"), bpr)  # fmt: skip
    history.start(scenario="nightly", target="app:app", revision="r2", run_dir="d", plan="8h")
    result = memsoak("history", "--history", str(tmp_path / "h.sqlite"))
    assert result.returncode == 0, result.stderr
    assert "scenario nightly: 4 run(s)" in result.stdout
    assert "▁▁█▁" in result.stdout  # the unfinished run has no number yet
    assert "unfinished" in result.stdout and "top suspect app.py:3" in result.stdout
    missing = memsoak("history", "--history", str(tmp_path / "none.sqlite"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


def test_run_rejects_conflicting_soak_options(capsys: pytest.CaptureFixture[str]) -> None:
    from memsoak.cli import main

    for args in (
        ["--requests", "100", "--duration", "1m"],
        ["--checkpoint-every", "1m"],
        ["--duration", "1m", "--checkpoint-every", "2m"],
        ["--duration", "8 hours"],
    ):
        assert main(["run", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("memsoak: error:") and err.count("\n") == 1, err
