"""Every report writer, tested by parsing what it wrote.

The reports are built by the real analysis from snapshots shaped like a real run: one site that
grows in proportion to requests (a leak), one that fills and stops (a cache), one that never moves.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import junitparser
import pytest

from analysis.model import Frame, RequestCounts, RunData, Sample, SiteStat, Snapshot, WorkerMemory
from analysis.report import Report, build_report
from analysis.units import human_bytes
from analysis.writers import (
    WRITERS,
    UnknownFormat,
    csv_series,
    html,
    json_report,
    junit,
    markdown,
    parse_formats,
    svg_chart,
)
from memsoak.cli import main
from memsoak.rundir import RunDir

APP = "/srv/app/fetchuserdata.py"
LEAK_TB = (
    Frame("/srv/app/app.py", 12, "index", "fetch_user_data()"),
    Frame(APP, 6, "fetch_user_data", "users_list.extend(data)"),
)
CACHE_TB = (Frame("/srv/app/cache.py", 3, "remember", "_cache[key] = a | b < 2 & 'x'"),)
STILL_TB = (Frame("/srv/app/app.py", 2, "<module>", "import flask"),)
MEASURED = 2000
LEAK_PER_REQUEST = 40_000


def _snapshot(requests: int) -> Snapshot:
    leak = LEAK_PER_REQUEST * requests
    cache = 200 * min(requests, 500)  # fills over the first 500 requests, then stays
    sites = {
        LEAK_TB: SiteStat(1000 + leak, 1),
        CACHE_TB: SiteStat(5000 + cache, 10 + min(requests, 500)),
        STILL_TB: SiteStat(3_000_000, 20_000),
    }
    traced = sum(s.size for s in sites.values())
    return Snapshot(
        pid=4242,
        taken_at=1_700_000_000.0 + requests / 100,
        requests=requests,
        rss_bytes=30_000_000 + traced + requests * 100,
        traced_bytes=traced,
        tracemalloc_overhead_bytes=100_000,
        frames_limit=10,
        duration_s=0.25,
        sites=sites,
    )


def leak_run(measured: int = MEASURED) -> RunData:
    points = [round(measured * i / 4) for i in range(5)]
    snapshots = [_snapshot(r) for r in points]
    samples = [
        Sample(
            requests=r,
            elapsed_s=r / 250,
            rss_bytes=_snapshot(r).rss_bytes,
            traced_bytes=_snapshot(r).traced_bytes,
        )
        for r in range(50, measured, 100)
    ]
    return RunData(
        snapshots=snapshots,
        samples=samples,
        requests=RequestCounts(warmup=200, measured=measured, failed=3),
        parameters={
            "requests": measured,
            "users": 10,
            "locustfile": "/repo/locustfiles/seed.py",
            "host": None,
        },
        locust_stats={"requests": measured + 200, "failures": 3, "rps": 250.0, "p50_ms": 12, "p95_ms": 40},
        events=["17:00:00 test started", "17:00:09 final snapshot <done> & saved"],
    )


def quiet_run() -> RunData:
    snapshots = []
    for r in (0, 500, 1000):
        sites = {STILL_TB: SiteStat(3_000_000, 20_000)}
        snapshots.append(Snapshot(4242, 0.0, r, 50_000_000, 3_000_000, 100_000, 10, 0.1, sites))
    return RunData(snapshots, [], RequestCounts(100, 1000, 0))


@pytest.fixture(scope="module")
def leak() -> Report:
    report = build_report(leak_run())
    assert report.verdict.kind == "leak", report.verdict  # the input is what these tests claim
    assert report.suspects[0].line == 6
    return report


@pytest.fixture(scope="module")
def quiet() -> Report:
    report = build_report(quiet_run())
    assert report.verdict.kind == "no-leak", report.verdict
    return report


def _render(module, report: Report) -> str:  # type: ignore[no-untyped-def]
    buffer = io.StringIO()
    module.render(report, buffer)
    return buffer.getvalue()


def test_every_writer_has_the_same_small_interface() -> None:
    assert {"json", "markdown", "html", "junit", "csv"} <= set(WRITERS)
    filenames = [filename for filename, _ in WRITERS.values()]
    assert len(set(filenames)) == len(filenames)
    assert all(callable(render) for _, render in WRITERS.values())


def test_parse_formats() -> None:
    assert parse_formats("all") == tuple(WRITERS)
    assert parse_formats("") == tuple(WRITERS)
    assert parse_formats("html, JUnit,html") == ("html", "junit")
    with pytest.raises(UnknownFormat, match="pdf"):
        parse_formats("html,pdf")


# -- HTML ------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects what the tests look at: ids, tags, table cells, and any outside reference."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        for key in ("src", "href", "xlink:href"):
            value = values.get(key) or ""
            if value and not value.startswith("#"):
                self.external.append(value)
        if tag == "table":
            self._table = values.get("id") or ""
            self.rows[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row is not None:
            self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def test_html_report_has_verdict_charts_suspects_and_stats(leak: Report) -> None:
    text = _render(html, leak)
    page = _page(text)
    assert {"verdict", "verdict-sentence", "memory-chart", "suspects-chart", "suspects"} <= page.ids
    assert page.tags.count("svg") == 2  # the two charts, inlined
    assert page.external == []  # opens offline: nothing fetched from anywhere
    assert "<script" not in text
    body = "".join(page.text)
    assert leak.verdict.explanation in body
    header, *rows = page.rows["suspects"]
    assert header[:4] == ["#", "site", "source line", "bytes/request"]
    assert len(rows) == 2 * len(leak.suspects)  # each suspect, then its folded traceback
    assert rows[0][1].startswith("fetchuserdata.py:6") and APP in rows[0][1]
    assert rows[1][1].startswith("traceback, 2 frames") and "users_list.extend(data)" in rows[1][1]
    assert rows[0][2] == "users_list.extend(data)"
    assert float(rows[0][3].replace(",", "")) == pytest.approx(LEAK_PER_REQUEST, rel=0.01)
    assert text.count("<details>") == len(leak.suspects)
    # Data from the run is escaped, not interpreted: a source line with <, & and quotes.
    assert "final snapshot <done> & saved" in body
    assert "&lt;done&gt; &amp; saved" in text
    stats = dict((row[0], row[1]) for row in page.rows["locust-stats"])
    assert stats["requests/s"] == "250.0" and stats["95th percentile (ms)"] == "40"
    assert stats["requests"] == f"{MEASURED + 200:,}"
    assert dict((r[0], r[1]) for r in page.rows["parameters"])["users"] == "10"
    assert len(page.rows["checkpoints"]) == 1 + len(leak.checkpoints)


def test_html_charts_carry_the_fit_and_the_suspects(leak: Report) -> None:
    memory = ET.fromstring(html.memory_chart(leak))
    labels = [t.text or "" for t in memory.iter("{http://www.w3.org/2000/svg}text")]
    assert any("RSS fit:" in label and "B/request" in label for label in labels)
    suspects = ET.fromstring(html.suspects_chart(leak))
    labels = [t.text or "" for t in suspects.iter("{http://www.w3.org/2000/svg}text")]
    assert "#1 fetchuserdata.py:6" in labels


def test_html_report_without_suspects(quiet: Report) -> None:
    page = _page(_render(html, quiet))
    assert "no-suspects" in page.ids and "suspects" not in page.rows
    assert page.tags.count("svg") == 1


def test_html_is_repeatable(leak: Report) -> None:
    assert _render(html, leak) == _render(html, leak)


# -- Markdown --------------------------------------------------------------------------------


def test_markdown_is_short_and_names_the_line(leak: Report) -> None:
    text = _render(markdown, leak)
    lines = text.splitlines()
    assert lines[0] == "# memsoak: **leak**"
    assert len(lines) < 60  # fits a CI job summary / PR comment
    table = [line for line in lines if line.startswith(f"| `{APP}:6`")]
    assert len(table) == 1
    cells = [c.strip() for c in table[0].strip("|").split(" | ")]
    assert float(cells[2].replace(",", "")) == pytest.approx(LEAK_PER_REQUEST, rel=0.01)


def test_markdown_escapes_table_cells(leak: Report) -> None:
    text = _render(markdown, leak)
    (row,) = [line for line in text.splitlines() if "cache.py:3" in line and "_cache[key]" in line]
    assert "a \\| b < 2 & 'x'" in row and row.count(" | ") == 5


# -- JUnit -----------------------------------------------------------------------------------


def _junit(report: Report, tmp_path: Path) -> tuple[ET.Element, junitparser.JUnitXml]:
    path = tmp_path / "junit.xml"
    path.write_text(_render(junit, report), encoding="utf-8")
    return ET.parse(path).getroot(), junitparser.JUnitXml.fromfile(str(path))


def test_junit_fails_on_a_leak(leak: Report, tmp_path: Path) -> None:
    root, parsed = _junit(leak, tmp_path)
    cases = root.findall(".//testcase")
    assert len(cases) == 1 and cases[0].get("classname") == "memsoak.seed"
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("type") == "leak"
    assert f"{APP}:6" in (failure.text or "")
    suites = list(parsed)
    assert len(suites) == 1 and suites[0].tests == 1 and suites[0].failures == 1
    (case,) = list(suites[0])
    assert not case.is_passed and isinstance(case.result[0], junitparser.Failure)


def test_junit_passes_without_a_leak(quiet: Report, tmp_path: Path) -> None:
    root, parsed = _junit(quiet, tmp_path)
    assert root.find(".//failure") is None and root.find(".//skipped") is None
    (suite,) = list(parsed)
    assert suite.failures == 0 and all(case.is_passed for case in suite)


def test_junit_skips_an_inconclusive_run(tmp_path: Path) -> None:
    report = build_report(leak_run(measured=40))  # too few requests to say anything
    assert report.verdict.kind == "inconclusive"
    root, parsed = _junit(report, tmp_path)
    assert root.find(".//skipped") is not None
    (case,) = list(next(iter(parsed)))
    assert case.is_skipped


def test_junit_survives_characters_xml_cannot_carry(leak: Report, tmp_path: Path) -> None:
    report = build_report(leak_run())
    report.parameters["odd"] = "bell\x07 and <tag>"
    root, _ = _junit(report, tmp_path)
    (prop,) = [p for p in root.iter("property") if p.get("name") == "odd"]
    assert prop.get("value") == "bell\ufffd and <tag>"


# -- CSV -------------------------------------------------------------------------------------


def test_csv_series_has_samples_and_checkpoints_in_request_order(leak: Report) -> None:
    rows = list(csv.DictReader(io.StringIO(_render(csv_series, leak))))
    assert list(rows[0]) == list(csv_series.COLUMNS)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("checkpoint") == len(leak.checkpoints)
    assert kinds.count("sample") == len(leak.samples)
    requests = [int(r["requests"]) for r in rows]
    assert requests == sorted(requests)
    first_sample = next(r for r in rows if r["kind"] == "sample")
    sample = leak.samples[0]
    assert int(first_sample["rss_bytes"]) == sample.rss_bytes
    assert float(first_sample["elapsed_s"]) == pytest.approx(sample.elapsed_s)
    assert all(r["elapsed_s"] == "" for r in rows if r["kind"] == "checkpoint")


# -- memsoak report RUN_DIR --format -----------------------------------------------------------


def _saved_run(path: Path) -> Path:
    run = leak_run()
    run_dir = RunDir(path).prepare()
    from analysis.snapshot_io import snapshot_to_dict

    for snapshot in run.snapshots:
        run_dir.save_snapshot(snapshot_to_dict(snapshot), snapshot.requests, "checkpoint")
    run_dir.save_state(run, "finished")
    return path


def test_report_command_renders_the_chosen_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _saved_run(tmp_path / "run")
    assert main(["report", str(run_dir), "--format", "junit,csv"]) == 0
    assert sorted(p.name for p in run_dir.glob("*.*")) == ["junit.xml", "run.json", "series.csv"]
    assert main(["report", str(run_dir)]) == 0
    names = {p.name for p in run_dir.iterdir()}
    assert {filename for filename, _ in WRITERS.values()} <= names
    json.loads((run_dir / "report.json").read_text())
    out = capsys.readouterr().out
    assert "report.html" in out


def test_report_command_refuses_an_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _saved_run(tmp_path / "run")
    assert main(["report", str(run_dir), "--format", "pdf"]) == 2
    err = capsys.readouterr().err
    assert "unknown report format 'pdf'" in err and "Traceback" not in err


def test_markdown_has_the_load_numbers(leak: Report) -> None:
    text = _render(markdown, leak)
    assert "Load (Locust): 250.0 req/s, 12 ms median, 40 ms p95." in text


def test_every_writer_copes_with_a_run_that_gathered_nothing(tmp_path: Path) -> None:
    # A target that died before its baseline snapshot: still a report, in every format.
    report = build_report(RunData([], [], RequestCounts(0, 0, 0), events=["target died"]))
    for name, (filename, render) in WRITERS.items():
        buffer = io.StringIO()
        render(report, buffer)
        text = buffer.getvalue()
        assert text, name
        if filename.endswith(".json"):
            json.loads(text)
        elif filename.endswith(".xml"):
            assert ET.fromstring(text.split("\n", 1)[1]).find(".//skipped") is not None
        elif filename.endswith(".html"):
            assert "target died" in "".join(_page(text).text)
        elif filename.endswith(".csv"):
            assert text.splitlines() == [",".join(csv_series.COLUMNS)]


def test_run_refuses_an_unknown_format_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--format", "html,pdf"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown report format 'pdf'" in err


# -- multi-worker targets --------------------------------------------------------------------


def _two_workers(snapshot: Snapshot) -> Snapshot:
    """`snapshot` as if merged from two workers: 101 served a quarter of the requests and holds a
    quarter of the leak; the cache lives in 102 only."""
    sites = {}
    for traceback, stat in snapshot.sites.items():
        first = 0 if traceback == CACHE_TB else stat.size // 4
        sites[traceback] = SiteStat(stat.size, stat.count, (first, stat.size - first))
    quarter = snapshot.requests // 4
    workers = (
        WorkerMemory(101, snapshot.rss_bytes // 4, snapshot.traced_bytes // 4, 50 + quarter),
        WorkerMemory(102, snapshot.rss_bytes - snapshot.rss_bytes // 4, 0, 150 + snapshot.requests - quarter),
    )
    return replace(snapshot, sites=sites, workers=workers)


@pytest.fixture(scope="module")
def workers_report() -> Report:
    run = leak_run()
    run.snapshots = [_two_workers(s) for s in run.snapshots]
    report = build_report(run)
    assert report.verdict.kind == "leak"
    return report


def test_every_writer_shows_each_workers_suspects(workers_report: Report, tmp_path: Path) -> None:
    per_worker = LEAK_PER_REQUEST * MEASURED
    doc = json.loads(_render(json_report, workers_report))
    rows = {w["pid"]: w for w in doc["workers"]}
    assert set(rows) == {101, 102}
    assert rows[101]["requests_served"] == MEASURED // 4
    leak_101 = rows[101]["suspects"][0]
    assert (leak_101["file"], leak_101["line"], leak_101["rank"]) == (APP, 6, 1)
    assert leak_101["size_diff"] == per_worker // 4
    # Its share of the leak over its share of the requests: the same 40 KB per request.
    assert leak_101["bytes_per_request"] == pytest.approx(LEAK_PER_REQUEST, rel=0.01)
    assert leak_101["share"] == pytest.approx(0.25, abs=0.01)
    assert len(rows[101]["suspects"]) == len(doc["suspects"][:5])
    # The cache (a plateau, ranked after the leak) grew in 102 alone.
    cache = {w: [s for s in rows[w]["suspects"] if s["file"] == "/srv/app/cache.py"] for w in rows}
    assert cache[102][0]["share"] == 1.0 and cache[101][0]["size_diff"] == 0

    markdown_text = _render(markdown, workers_report)
    section = markdown_text.split("### Suspects per worker", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| 10")]
    assert table[0].startswith(f"| 101 | #1 | `{APP}:6` |") and table[0].endswith("| 25% |")
    assert any(line.startswith(f"| 102 | #1 | `{APP}:6` |") and line.endswith("| 75% |") for line in table)

    page = _page(_render(html, workers_report))
    header, *cells = page.rows["workers"]
    assert header[0] == "pid" and header[-1] == "top suspects in this worker"
    by_pid = {row[0]: row for row in cells}
    assert "fetchuserdata.py:6" in by_pid["101"][-1] and "(25%)" in by_pid["101"][-1]
    assert set(by_pid) == {"101", "102", "total"}
    assert by_pid["total"][3] == human_bytes(sum(w.rss_end for w in workers_report.workers))

    failure = ET.fromstring(_render(junit, workers_report)).find(".//failure")
    assert failure is not None
    assert f"worker 101 ({MEASURED // 4} requests): #1 40,000.0 B/request (25%)" in (failure.text or "")


def test_no_per_worker_suspects_without_per_worker_sizes(workers_report: Report) -> None:
    """Snapshots merged before the sizes were kept per worker: the rows stay, the suspects go."""
    run = leak_run()
    run.snapshots = [
        replace(s, sites={t: SiteStat(v.size, v.count) for t, v in s.sites.items()})
        for s in (_two_workers(s) for s in run.snapshots)
    ]
    report = build_report(run)
    assert [row.pid for row in report.workers] == [101, 102]
    assert all(row.suspects == () for row in report.workers)
    assert "Suspects per worker" not in _render(markdown, report)


def test_svg_chart_ticks_cover_the_data_in_round_steps() -> None:
    for low, high in ((0, 1), (0, 9_999), (37, 1_234_567), (0.0, 0.3), (5, 5)):
        ticks = svg_chart.nice_ticks(low, high)
        assert ticks[0] <= low and ticks[-1] >= high and 2 <= len(ticks) <= 12
        steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1
        mantissa = f"{steps.pop():e}".split("e")[0]
        assert float(mantissa) in (1.0, 2.0, 5.0)


def test_svg_chart_escapes_every_label() -> None:
    hostile = '<script>alert("x")</script> & "quotes"'
    series = [svg_chart.Series(hostile, ((0, 1.0), (10, 2.0)), "#000000", markers=True)]
    svg = svg_chart.line_chart(hostile, hostile, hostile, series, vlines=[5])
    root = ET.fromstring(svg)  # well-formed, so nothing in a label became markup
    assert not list(root.iter("{http://www.w3.org/2000/svg}script"))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts.count(hostile) == 4  # title, both axes, the legend
    assert len(list(root.iter("{http://www.w3.org/2000/svg}circle"))) == 3  # two points, one key
