"""The verdict rules on snapshot series made to shape, and the retention search on a real heap."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Sequence
from typing import ClassVar

import pytest

from analysis.driven import driven_growth
from analysis.model import Frame, RequestCounts, RunData, Sample, SiteStat, Snapshot
from analysis.report import build_report
from analysis.retention import read_retention
from analysis.suspects import late_ratio
from analysis.thresholds import Thresholds, thresholds_from
from analysis.writers import json_report, markdown

APP = Frame("/srv/app/views.py", 12, "index", "cache[key] = value")
LIB = "/usr/lib/python3.11/"
IN_LIB = (Frame("/srv/app/views.py", 30, "index", "uuid.uuid4().hex"), Frame(f"{LIB}uuid.py", 330, "hex", ""))
MB = 1024 * 1024


def series(
    requests: Sequence[int],
    sites: dict[tuple[Frame, ...], Sequence[int]],
    rss: Sequence[int] | None = None,
    traced: Sequence[int] | None = None,
) -> list[Snapshot]:
    snapshots = []
    for i, count in enumerate(requests):
        total = sum(sizes[i] for sizes in sites.values())
        snapshots.append(
            Snapshot(
                pid=1,
                taken_at=float(i),
                requests=count,
                rss_bytes=rss[i] if rss else 80 * MB + total,
                traced_bytes=traced[i] if traced else 8 * MB + total,
                tracemalloc_overhead_bytes=MB,
                frames_limit=10,
                duration_s=0.5,
                sites={tb: SiteStat(sizes[i], 1 + sizes[i] // 100) for tb, sizes in sites.items()},
                library_files=(LIB,),
            )
        )
    return snapshots


def report_for(snapshots: list[Snapshot], samples: Sequence[Sample] = (), **limits: float):
    run = RunData(
        snapshots=snapshots, samples=list(samples), requests=RequestCounts(100, snapshots[-1].requests, 0)
    )
    return build_report(run, Thresholds(**limits) if limits else None)  # type: ignore[arg-type]


REQUESTS = [0, 500, 1000, 1500, 2000]


def test_steady_growth_is_a_leak_with_its_evidence() -> None:
    report = report_for(series(REQUESTS, {(APP,): [r * 100 for r in REQUESTS]}))
    assert report.verdict.kind == "leak"
    assert report.verdict.rule == "steady-growth-site"
    assert report.verdict.confidence >= 0.9
    top = report.suspects[0]
    assert (top.line, top.steady, top.grew_share) == (12, True, 1.0)
    assert top.fit_per_request == pytest.approx(100)
    assert top.late_ratio == pytest.approx(1.0)


def test_cache_that_fills_then_stops_is_not_a_leak() -> None:
    report = report_for(series(REQUESTS, {(APP,): [0, 200_000, 200_000, 200_100, 200_000]}))
    assert report.verdict.kind == "no-leak"
    assert report.verdict.rule == "growth-plateaued"
    assert report.suspects[0].steady is False


def test_growth_that_slows_down_is_inconclusive_and_says_what_would_decide() -> None:
    # 350 KB over the first half, 50 KB over the second: late rate 0.25x the overall one.
    report = report_for(series(REQUESTS, {(APP,): [0, 200_000, 350_000, 380_000, 400_000]}))
    assert report.verdict.kind == "inconclusive"
    assert report.verdict.rule == "slowing-growth-site"
    assert "8,000" in report.verdict.explanation  # 4x the requests


def test_too_few_requests_is_inconclusive() -> None:
    report = report_for(series([0, 50, 100], {(APP,): [0, 50_000, 100_000]}))
    assert report.verdict.kind == "inconclusive"
    assert report.verdict.rule == "too-little-data"


def test_growth_below_the_noise_floor_is_not_a_suspect() -> None:
    report = report_for(series(REQUESTS, {(APP,): [r * 10 for r in REQUESTS]}))  # 10 B/request
    assert report.suspects == ()
    assert report.verdict.kind == "no-leak"
    lowered = report_for(
        series(REQUESTS, {(APP,): [r * 10 for r in REQUESTS]}),
        suspect_min_bytes_per_request=5,
        suspect_min_total_bytes=1024,
    )
    assert lowered.verdict.kind == "leak"


def test_library_allocation_names_the_users_line_too() -> None:
    report = report_for(series(REQUESTS, {IN_LIB: [r * 80 for r in REQUESTS]}))
    top = report.suspects[0]
    assert top.file.endswith("uuid.py")
    assert top.user_frame is not None and top.user_frame.line == 30
    assert "called from /srv/app/views.py:30" in report.verdict.explanation


def test_leak_suspects_come_before_bigger_plateaus() -> None:
    plateau = (Frame("/srv/app/boot.py", 3, "load", ""),)
    report = report_for(
        series(
            REQUESTS, {plateau: [0, 900_000, 900_000, 900_000, 900_000], (APP,): [r * 60 for r in REQUESTS]}
        )
    )
    assert [s.file for s in report.suspects] == ["/srv/app/views.py", "/srv/app/boot.py"]
    assert report.verdict.kind == "leak"


def _samples_before(requests: Sequence[int], rss_before: Sequence[int]) -> list[Sample]:
    return [Sample(r, float(i), b, 8 * MB) for i, (r, b) in enumerate(zip(requests, rss_before, strict=True))]


def test_rss_growing_between_snapshots_with_flat_traced_memory_is_native() -> None:
    # 32 KB/request of RSS between snapshots; each snapshot adds 3 MB of its own on top.
    after = [80 * MB + r * 32 * 1024 + i * 3 * MB for i, r in enumerate(REQUESTS)]
    before = [after[0]] + [after[i - 1] + 500 * 32 * 1024 for i in range(1, len(REQUESTS))]
    snapshots = series(REQUESTS, {}, rss=after, traced=[8 * MB] * 5)
    report = report_for(snapshots, _samples_before(REQUESTS, before))
    assert report.verdict.kind == "native-leak"
    assert "memray" in report.verdict.explanation
    assert "tracemalloc cannot see" in report.verdict.explanation


def test_rss_steps_made_by_the_snapshots_themselves_are_not_a_native_leak() -> None:
    # The shape measured on a bounded cache: RSS jumps at snapshots, flat in between.
    after = [78 * MB, 84 * MB, 82 * MB, 82 * MB, 87 * MB]
    before = [after[0], *after[:-1]]  # flat between snapshots
    snapshots = series(REQUESTS, {}, rss=after, traced=[8 * MB] * 5)
    fit_only = report_for(snapshots)  # without readings before the snapshots it would look native
    assert fit_only.rss.per_request > 512
    report = report_for(snapshots, _samples_before(REQUESTS, before))
    assert report.verdict.kind == "no-leak"


def test_driven_growth_sums_only_the_intervals() -> None:
    checkpoints = [(0, 100), (10, 200), (20, 300)]
    samples = [Sample(10, 1.0, 150, 0), Sample(10, 2.0, 999, 0), Sample(20, 3.0, 260, 0)]
    growth = driven_growth(checkpoints, samples, "rss_bytes")
    assert growth.cumulative == (0, 50, 110)
    assert growth.per_request == pytest.approx(5.5)


def test_late_ratio() -> None:
    assert late_ratio([0, 10, 20, 30, 40], [0, 1, 2, 3, 4]) == pytest.approx(1.0)
    assert late_ratio([0, 40, 40, 40, 40], [0, 1, 2, 3, 4]) == 0.0
    assert late_ratio([0, 5], [0, 1]) == 1.0  # two points cannot tell


def test_thresholds_are_checked() -> None:
    assert thresholds_from({"steady_ratio": 0.7, "plateau_ratio": None}).steady_ratio == 0.7
    with pytest.raises(ValueError, match="plateau-ratio"):
        thresholds_from({"plateau_ratio": 0.9})
    with pytest.raises(ValueError, match="min-bytes-per-request"):
        thresholds_from({"suspect_min_bytes_per_request": -1.0})


def test_retention_answers_are_read_defensively() -> None:
    good = {
        "traceback": [["/srv/app/views.py", 12]],
        "found": True,
        "method": "items",
        "root": "module app",
        "steps": ["global cache (dict of 3 items)"],
        "held": {"type": "dict", "length": 3, "size": 360},
        "objects": 0,
    }
    key, path = read_retention(good) or ((), None)
    assert key == (("/srv/app/views.py", 12),)
    assert (
        path is not None
        and path.summary == "module app -> global cache (dict of 3 items) (dict of 3 items, 360 bytes)"
    )
    assert read_retention({"traceback": [["x", "12"]]}) is None
    assert read_retention(["not", "a", "dict"]) is None


def test_reports_show_growth_fit_and_retention() -> None:
    snapshots = series(REQUESTS, {(APP,): [r * 100 for r in REQUESTS]})
    run = RunData(snapshots=snapshots, samples=[], requests=RequestCounts(100, 2000, 0))
    run.retention = [
        {
            "traceback": [[APP.file, APP.line]],
            "found": True,
            "method": "items",
            "root": "module app",
            "steps": ["global cache (dict of 2,000 items)"],
            "held": {"type": "dict", "length": 2000, "size": 73_000},
        }
    ]
    report = build_report(run)
    out = io.StringIO()
    json_report.render(report, out)
    doc = json.loads(out.getvalue())
    suspect = doc["suspects"][0]
    assert suspect["fit"]["per_request"] == pytest.approx(100)
    assert suspect["retention"]["root"] == "module app"
    assert doc["confidence"] == report.verdict.confidence and doc["rule"] == "steady-growth-site"
    text = io.StringIO()
    markdown.render(report, text)
    assert "global cache" in text.getvalue()
    assert "Growth per checkpoint interval" in text.getvalue()


# -- the agent's retention search, on this process's own heap ------------------------------------

_registry: dict[str, bytes] = {}


class Audit:
    entries: ClassVar[list[bytes]] = []


def _remember(key: str) -> None:
    # bytes, not a list: a list object may come from CPython's free list, which tracemalloc never
    # sees, so get_object_traceback() would find nothing for it (depending on earlier tests).
    _registry[key] = bytes(400) + key.encode()  # the "suspect" line


def _record(n: int) -> None:
    Audit.entries.append(bytes(200) + str(n).encode())  # the other "suspect" line


def _traceback_of(obj: object) -> list[list[object]]:
    traceback = tracemalloc.get_object_traceback(obj)
    assert traceback is not None
    return [[frame.filename, frame.lineno] for frame in traceback]


def test_retention_search_finds_the_global_and_the_class_attribute() -> None:
    from memsoak.agent.retention import find_retention

    tracemalloc.start(5)
    try:
        for n in range(300):
            _remember(f"user-{n}")
            _record(n)
        suspects = [
            {"traceback": _traceback_of(_registry["user-299"]), "live_bytes": 300 * 500},
            {"traceback": _traceback_of(Audit.entries[-1]), "live_bytes": 300 * 250},
        ]
        answer = find_retention(suspects, max_seconds=30)
    finally:
        tracemalloc.stop()
        _registry.clear()
        Audit.entries.clear()
    registry, audit = answer["suspects"]
    assert registry["found"] and registry["method"] == "items"
    assert registry["root"] == f"module {__name__}"
    assert registry["steps"][0].startswith("global _registry (dict of 300 items)")
    assert audit["found"], audit
    assert audit["root"] == f"class {__name__}.Audit"
    assert audit["steps"][0].startswith("attribute entries (list of 300 items)")


def test_threshold_flags_are_checked_before_any_load(capsys: pytest.CaptureFixture[str]) -> None:
    from memsoak.cli import main

    assert main(["run", "--steady-ratio", "0.3", "--plateau-ratio", "0.4"]) == 2
    assert capsys.readouterr().err.strip() == (
        "memsoak: error: --plateau-ratio must be between 0 and steady-ratio"
    )
    assert main(["run", "--min-bytes-per-request", "nope"]) == 2


def _call_agent(body: bytes, token: str = "t0ken") -> tuple[str, dict[str, object]]:
    from memsoak.agent import Agent

    agent = Agent(lambda environ, start_response: [], token="t0ken")
    seen: list[str] = []
    environ = {
        "PATH_INFO": "/__memsoak__/retention",
        "REQUEST_METHOD": "POST",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    chunks = agent(environ, lambda status, headers: seen.append(status))
    return seen[0], json.loads(b"".join(chunks))


def test_retention_endpoint_takes_tracebacks_as_data_only() -> None:
    status, _ = _call_agent(b'{"suspects": [{"traceback": "/etc/passwd"}]}')
    assert status.startswith("400")
    status, _ = _call_agent(b'{"suspects": []}')
    assert status.startswith("400")
    status, _ = _call_agent(b'{"suspects": [{"traceback": [["a.py", 1]]}]}', token="wrong")
    assert status.startswith("401")
    tracemalloc.start(1)
    try:
        status, answer = _call_agent(b'{"suspects": [{"traceback": [["nowhere.py", 1]], "live_bytes": 0}]}')
    finally:
        tracemalloc.stop()
    assert status.startswith("200")
    assert answer["suspects"][0]["found"] is False  # type: ignore[index]
