"""Test stop: the final snapshot, the figures as the plan measured them, the report (with the
retention paths), the files, the summary, the history row and the exit code."""

from __future__ import annotations

import time
from dataclasses import replace

from analysis.model import RequestCounts
from analysis.report import Report, build_report
from memsoak.failures import exception_lines
from memsoak.locust.plans import Plan
from memsoak.locust.session import Session
from memsoak.progress import summary_line
from memsoak.summary import summary_lines

EXIT_LEAK = 1
EXIT_REGRESSION = 1
EXIT_TARGET_FAILED = 3


def finish(
    session: Session, plan: Plan, completed: int, locust_stats: dict[str, object]
) -> tuple[Report, int | None]:
    """The run's report, written, and the exit code it calls for (None: Locust's own). The gate
    is closed and the plan stopped; `completed`: requests completed, warm-up included."""
    settings = session.settings
    data = session.data
    measured_in_all = max(0, completed - settings.warmup)
    measured, window = plan.span(measured_in_all)
    snapshots = data.snapshots
    complete = plan.complete(measured_in_all)
    if not complete:
        session.event(plan.stopped_early(measured, measured_in_all, window))
    if session.interrupted and session.target_failed:
        # A terminal's Ctrl-C reaches the target too: an agent that stopped answering then is
        # the interrupt, not a failure. The run ends at its last snapshot.
        session.target_failed = False
    elif snapshots and snapshots[-1].requests != measured and not session.target_failed:
        session.snapshot(measured, "final", required=not session.interrupted)
    if session.target_failed and snapshots and snapshots[-1].requests < measured:
        # Requests after the last snapshot hit a failing target and no snapshot measured
        # them: counting them would dilute every bytes-per-request figure.
        session.event(
            f"{measured - snapshots[-1].requests} requests after the last snapshot (at "
            f"{snapshots[-1].requests}) are left out of the per-request figures"
        )
    failed_requests = session.failed_measured
    if (session.interrupted or session.target_failed) and snapshots:
        measured = snapshots[-1].requests
        # Only the failures among those requests (counted as of the last snapshot): the ones
        # after it hit a target already dying, and say no more than its death does.
        failed_requests = min(failed_requests, data.requests.failed)
    data.requests = RequestCounts(
        warmup=min(completed, settings.warmup) + session.offset,
        measured=measured,
        failed=failed_requests,
        window=window,
        failed_warmup=session.failed_warmup,
    )
    data.locust_stats = locust_stats
    if (session.failed_measured or session.failed_warmup) and settings.target_log is not None:
        data.target_errors = exception_lines(settings.target_log)
    data.phases = plan.phases(data.requests.warmup, measured)
    report = _report(session)
    erred = report.verdict.rule == "requests-failed"
    if erred:
        # For `memsoak run`'s last line; the summary below shows the explanation already.
        stamp, explanation = time.strftime("%Y-%m-%d %H:%M:%S %z"), report.verdict.explanation
        data.events.append(f"{time.strftime('%H:%M:%S')} requests failed at {stamp}: {explanation}")
    else:  # no plan's own verdict (watch mode's quiet one) may stand for a target that erred
        report = plan.conclude(report)
    session.restore_tracing()
    # A run whose requests failed is no baseline for the regression check either.
    failed = session.target_failed or session.load_failed or erred
    status = "failed" if failed else "finished"
    session.run_dir.save_state(data, status)
    paths = session.run_dir.write_reports(report, settings.formats or None)
    if session.progress:
        print(summary_line(report, paths), flush=True)
    else:
        for line in summary_lines(report, paths):
            print(line, flush=True)
    # The history tells a run cut short (Ctrl-C, --max-time) from one that ran its course:
    # only the latter are a baseline for the regression check.
    regressed = (
        session.history.finish(status if failed or complete else "interrupted", report)
        if session.history is not None
        else False
    )
    if failed:
        return report, EXIT_TARGET_FAILED
    if settings.fail_on_leak and report.verdict.kind == "leak":
        return report, EXIT_LEAK
    if settings.fail_on_regression and regressed:
        return report, EXIT_REGRESSION
    return report, None


def _report(session: Session) -> Report:
    """The report with retention paths, found before tracing is put back as it was (the search
    needs the traces)."""
    thresholds = session.settings.thresholds
    analysed = session.for_analysis(session.data)
    report = build_report(analysed, thresholds)
    # The search compares the suspects' tracebacks with the target's traces: as traced, not as
    # the call paths deepened them.
    traced = build_report(replace(analysed, call_paths={}), thresholds) if analysed.call_paths else report
    found = session.retention.answer_for(traced)
    if found is None:
        return report
    session.data.retention = found
    return build_report(replace(analysed, retention=found), thresholds)
