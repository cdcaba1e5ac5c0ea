"""Failed requests are no verdict: over `max_failed_share` of the measured requests failing makes
the run inconclusive (`requests-failed`, exit 3), quoting the failures and the target's last
exception; never `no-leak`, whatever the memory did."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from analysis.model import RequestCounts, RequestFailure, RunData
from analysis.report import build_report
from analysis.thresholds import Thresholds, thresholds_from
from memsoak.failures import exception_lines
from tests.test_faults import REPO, Run, runs  # noqa: F401  (the fixture)
from tests.test_verdict import APP, REQUESTS, series

ERRORING = "targets.faults.erroring"
FAILURE = RequestFailure("GET /", 500, "URL http://127.0.0.1:8000/: code=500")


def run_with(failed: int, *, leak: bool = False, **limits: float) -> RunData:
    sizes = [r * 100 for r in REQUESTS] if leak else [5000] * len(REQUESTS)
    return RunData(
        snapshots=series(REQUESTS, {(APP,): sizes}),
        samples=[],
        requests=RequestCounts(100, REQUESTS[-1], failed),
        failures=[FAILURE] if failed else [],
        target_errors=['File "/srv/app/views.py", line 9, in index', "KeyError: 'user'"],
    )


def test_over_the_share_is_inconclusive_and_quotes_the_failures() -> None:
    report = build_report(run_with(21))  # 21 of 2,000: 1.05%
    verdict = report.verdict
    assert (verdict.kind, verdict.rule, verdict.confidence) == ("inconclusive", "requests-failed", 0.0)
    assert "21 of 2,000 measured requests failed" in verdict.explanation
    assert "GET / -> HTTP 500" in verdict.explanation
    assert "KeyError: 'user'" in verdict.explanation
    assert report.failures == (FAILURE,)


def test_at_the_share_the_memory_decides() -> None:
    assert build_report(run_with(20)).verdict.rule == "no-growing-site"  # exactly 1%
    assert build_report(run_with(20, leak=True)).verdict.kind == "leak"


def test_a_leak_with_failing_requests_is_no_leak_verdict_either() -> None:
    # Requests that failed may have skipped the leaking code: the rate is not the app's.
    assert build_report(run_with(500, leak=True)).verdict.rule == "requests-failed"


def test_the_share_is_a_threshold() -> None:
    run = run_with(200)
    assert build_report(run, Thresholds(max_failed_share=0.2)).verdict.kind == "no-leak"
    assert build_report(run, Thresholds(max_failed_share=0.05)).verdict.rule == "requests-failed"
    with pytest.raises(ValueError, match="max-failed-share"):
        thresholds_from({"max_failed_share": 1.5})


def test_no_measured_request_but_failures_is_all_failed() -> None:
    run = run_with(0)
    run.snapshots = run.snapshots[:1]
    run.requests = RequestCounts(100, 0, 3)
    assert build_report(run).verdict.rule == "requests-failed"


def test_failures_in_a_warmup_decide_only_a_run_that_measured_too_little() -> None:
    from analysis.thresholds import Thresholds
    from analysis.verdict import failed_requests

    limits = Thresholds()
    stopped = failed_requests(0, 0, [], [], limits, warmup=40, failed_warmup=40)
    assert stopped is not None and stopped.rule == "requests-failed"
    assert "40 of 40 warm-up requests failed (100.0%) and the run measured 0" in stopped.explanation
    # A service's first requests failing as it warmed up, then a clean measured run: no matter.
    assert failed_requests(2000, 0, [], [], limits, warmup=200, failed_warmup=3) is None


def test_the_load_stops_once_failures_settle_the_verdict() -> None:
    from memsoak.locust.failing import FAIL_FAST_MIN, failures_settle_it

    def settle(measured: int, warmup: int, completed: int, planned: int | None) -> str | None:
        return failures_settle_it(
            failed_measured=measured, failed_warmup=warmup, completed=completed,
            planned_measured=planned, max_failed_share=0.01,
        )  # fmt: skip

    assert settle(100, 0, 5000, 10_000) is None  # 1% of the planned 10,000 may still fail
    assert "can only be inconclusive" in (settle(101, 0, 5000, 10_000) or "")
    assert settle(0, FAIL_FAST_MIN - 1, FAIL_FAST_MIN - 1, 10_000) is None  # too few to tell
    assert "errors on most requests" in (settle(0, FAIL_FAST_MIN, FAIL_FAST_MIN, 10_000) or "")
    assert settle(0, 30, 60, 10_000) is None  # half is not most
    assert settle(0, 41, 60, 10_000) is not None
    assert settle(150, 0, 1000, None) is None  # a soak: no planned count, and most succeeded


def test_the_last_exception_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "target.log"
    log.write_text(
        "serving on 127.0.0.1:1\n"
        "Traceback (most recent call last):\n"
        '  File "/a.py", line 1, in f\n    g()\n'
        "ValueError: first\n"
        "ERROR Exception in ASGI application\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/app.py", line 3, in g\n    h()\n'
        '  File "/srv/lib.py", line 7, in h\n    raise TypeError("missing send")\n'
        "TypeError: missing send\n"
        "127.0.0.1 - GET / 500\n"
    )
    assert exception_lines(log) == ['File "/srv/lib.py", line 7, in h', "TypeError: missing send"]
    assert exception_lines(tmp_path / "absent.log") == []
    (tmp_path / "quiet.log").write_text("serving\n")
    assert exception_lines(tmp_path / "quiet.log") == []


def test_a_target_that_errors_is_inconclusive_and_exits_3(runs: Callable[..., Run]) -> None:  # noqa: F811
    doc = (REPO / "targets/faults/erroring.py").read_text()
    assert re.search(r"^Expected rule: requests-failed$", doc, re.MULTILINE)
    run = runs("--app", f"{ERRORING}:app", "--requests", "600", "--warmup", "50", "--users", "4")
    assert run.finish() == 3, run.stderr()
    report = run.report()
    assert (report["verdict"], report["rule"]) == ("inconclusive", "requests-failed")
    # At the 7th measured failure, more than 1% of the 600 planned, the verdict was settled and
    # the load was stopped (how many more requests ran before it stopped is the machine's speed).
    failed, measured = report["requests"]["failed"], report["requests"]["measured"]
    assert 7 <= failed <= measured <= 600, report["requests"]
    stop = [e for e in report["events"] if "stopping the load: " in e]
    assert len(stop) == 1, report["events"]
    assert "7 measured requests failed, more than the 1.0% of 600 the verdict allows" in stop[0]
    assert "HTTP 500" in report["explanation"]
    assert "LookupBroke: the user table is gone" in report["explanation"]
    assert report["target_errors"][-1].endswith("LookupBroke: the user table is gone")
    assert [f["status"] for f in report["failures"]] == [500]  # distinct ones only
    # The last line says why, and the Markdown report is written too.
    assert f"{failed} of {measured} measured requests failed" in run.stderr().strip().splitlines()[-1]
    assert "requests-failed" in (run.out / "report.md").read_text()


def test_a_raised_share_lets_the_memory_decide(runs: Callable[..., Run]) -> None:  # noqa: F811
    run = runs("--app", f"{ERRORING}:app", "--requests", "600", "--warmup", "50", "--users", "4",
               "--max-failed-share", "0.6")  # fmt: skip
    assert run.finish() == 0, run.stderr()
    assert run.report()["verdict"] == "no-leak"
