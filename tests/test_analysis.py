"""Suspects, verdicts and writers on snapshots built by hand (no target needed)."""

from __future__ import annotations

import io
import json

from analysis.model import Frame, RequestCounts, RunData, Sample, SiteStat, Snapshot
from analysis.report import build_report
from analysis.writers import WRITERS

APP = Frame("/srv/app.py", 20, "index", "cache.append(row)")
ROUTE = Frame("/srv/app.py", 30, "view", "index()")
LIB = Frame("/usr/lib/python3.11/uuid.py", 300, "UUID.hex", "return '%032x' % self.int")
HARNESS = Frame("/srv/memsoak/agent/tracing.py", 10, "take_snapshot", "x")


def _snapshot(requests: int, sites: dict, rss: int, traced: int | None = None) -> Snapshot:
    return Snapshot(
        pid=1, taken_at=float(requests), requests=requests, rss_bytes=rss,
        traced_bytes=traced if traced is not None else sum(s.size for s in sites.values()),
        tracemalloc_overhead_bytes=0, frames_limit=10, duration_s=0.01, sites=sites,
        harness_files=("/srv/memsoak/agent/tracing.py",), library_files=("/usr/lib/python3.11/",),
    )  # fmt: skip


def _run(series: list[tuple[int, dict, int]], measured: int) -> RunData:
    return RunData(
        snapshots=[_snapshot(r, s, rss) for r, s, rss in series],
        samples=[],
        requests=RequestCounts(warmup=10, measured=measured, failed=0),
    )


def test_steady_growth_is_a_leak_with_bytes_per_request() -> None:
    series = [(r, {(ROUTE, APP): SiteStat(100 * r, 1)}, 50_000_000 + 120 * r) for r in range(0, 5001, 1000)]
    report = build_report(_run(series, 5000))
    assert report.verdict.kind == "leak"
    top = report.suspects[0]
    assert (top.file, top.line, top.bytes_per_request, top.steady) == ("/srv/app.py", 20, 100.0, True)
    assert top.growth == (0, 100_000, 200_000, 300_000, 400_000, 500_000)


def test_plateau_is_not_a_leak() -> None:
    filled = {0: 0, 1000: 400_000, 2000: 500_000, 3000: 500_000, 4000: 500_000, 5000: 500_000}
    series = [(r, {(ROUTE, APP): SiteStat(size, 1)}, 50_000_000) for r, size in filled.items()]
    report = build_report(_run(series, 5000))
    assert report.verdict.kind == "no-leak"
    assert report.verdict.rule == "growth-plateaued"
    assert report.suspects and not report.suspects[0].steady


def test_rss_growth_without_traced_growth_is_native() -> None:
    series = [(r, {(ROUTE, APP): SiteStat(1000, 1)}, 50_000_000 + 4096 * r) for r in range(0, 5001, 1000)]
    run = _run(series, 5000)
    # The harness reads RSS just before each snapshot: the growth requests drove between them.
    run.samples = [Sample(r, r / 100, 50_000_000 + 4096 * r, 1000) for r in range(1000, 5001, 1000)]
    report = build_report(run)
    assert report.verdict.kind == "native-leak"
    assert "tracemalloc cannot see" in report.verdict.explanation


def test_library_allocation_points_at_user_code_and_harness_is_ignored() -> None:
    series = [
        (r, {(ROUTE, APP, LIB): SiteStat(200 * r, r), (HARNESS,): SiteStat(900 * r, 1)}, 60_000_000)
        for r in range(0, 5001, 1000)
    ]
    report = build_report(_run(series, 5000))
    assert len(report.suspects) == 1
    suspect = report.suspects[0]
    assert suspect.file.endswith("uuid.py") and suspect.user_frame == APP
    assert suspect.objects_per_request == 1.0


def test_too_few_requests_is_inconclusive() -> None:
    series = [(0, {}, 1), (50, {(APP,): SiteStat(10**6, 1)}, 2)]
    assert build_report(_run(series, 50)).verdict.kind == "inconclusive"


def test_every_writer_renders_something_parseable() -> None:
    series = [(r, {(ROUTE, APP): SiteStat(100 * r, 1)}, 50_000_000) for r in range(0, 3001, 1000)]
    report = build_report(_run(series, 3000))
    outputs = {}
    for name, (_filename, render) in WRITERS.items():
        buffer = io.StringIO()
        render(report, buffer)
        outputs[name] = buffer.getvalue()
    doc = json.loads(outputs["json"])
    assert doc["schema_version"] == 1 and doc["verdict"] == "leak"
    assert doc["suspects"][0]["traceback"][-1] == {
        "file": "/srv/app.py", "line": 20, "function": "index", "code": "cache.append(row)",
    }  # fmt: skip
    assert set(doc["requests"]) == {"warmup", "measured", "failed"}  # + window after a call-path window
    assert {"start", "end", "per_request"} <= set(doc["rss_bytes"])
    assert "**leak**" in outputs["markdown"] and "`/srv/app.py:20`" in outputs["markdown"]
