"""`memsoak compare RUN_A RUN_B`: load two runs (history ids or run directories), analyse both the
same way, and say what grew between them."""

from __future__ import annotations

from pathlib import Path

from analysis.compare import Comparison, SiteChange, compare_reports
from analysis.report import Report, build_report
from memsoak.errors import MemsoakError
from memsoak.history import History
from memsoak.rundir import RunDir


def resolve_run(spec: str, history_path: Path) -> tuple[str, Path]:
    """(a name for the run, its directory). An existing directory wins over a history id."""
    path = Path(spec)
    if path.is_dir():
        return str(path), path
    if spec.isdigit():
        record = History(history_path).get(int(spec))
        return f"run {record.id} ({record.revision or 'no revision'}, {record.status})", Path(record.run_dir)
    raise MemsoakError(f"{spec!r} is neither a run directory nor a run id in the history")


def load_report(path: Path) -> Report:
    # Re-analysed from the raw data, so both sides use today's rules, finished or not.
    run, _status = RunDir(path).load()
    return build_report(run)


def _site(change: SiteChange) -> str:
    return f"{change.file}:{change.line}  {change.code}"


def comparison_lines(name_a: str, name_b: str, comparison: Comparison) -> list[str]:
    (va, vb), (ta, tb), (ra, rb) = (
        comparison.verdicts,
        comparison.traced_per_request,
        comparison.rss_per_request,
    )
    lines = [
        f"A: {name_a}: verdict {va}, traced {ta:,.0f} B/request, RSS {ra:,.0f} B/request",
        f"B: {name_b}: verdict {vb}, traced {tb:,.0f} B/request, RSS {rb:,.0f} B/request",
        f"traced bytes per request {tb - ta:+,.0f}, RSS bytes per request {rb - ra:+,.0f} (B - A)",
    ]
    sections = (
        ("new suspects (in B only)", "+", comparison.new),
        ("suspects that grew", "^", comparison.grew),
        ("suspects gone (in A only)", "-", comparison.gone),
        ("suspects that shrank", "v", comparison.shrank),
    )
    for title, mark, changes in sections:
        if not changes:
            continue
        lines.append(f"{title}:")
        for change in changes:
            lines.append(
                f"  {mark} {_site(change)}  {change.before:,.0f} -> {change.after:,.0f} B/request "
                f"({change.delta:+,.0f})"
            )
    if not (comparison.new or comparison.grew or comparison.gone or comparison.shrank):
        lines.append("no suspect is new, gone or clearly changed")
    if comparison.unchanged:
        lines.append(f"{len(comparison.unchanged)} suspect(s) about the same in both")
    return lines


def compare_runs(spec_a: str, spec_b: str, history_path: Path) -> list[str]:
    name_a, dir_a = resolve_run(spec_a, history_path)
    name_b, dir_b = resolve_run(spec_b, history_path)
    return comparison_lines(name_a, name_b, compare_reports(load_report(dir_a), load_report(dir_b)))
