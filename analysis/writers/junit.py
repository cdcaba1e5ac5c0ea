"""junit.xml: the verdict as a test result, so any CI that reads JUnit shows a leak as a failure.

One <testsuite> per run and one <testcase> per scenario (the locustfile the load came from).
A leak, native or not, is a <failure>; an inconclusive run is <skipped> (nothing was proven
either way); no leak passes. The details a person needs to act go in the failure's text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import PurePath
from typing import TextIO

from analysis.report import Report
from analysis.units import human_bytes

FORMAT = "junit"
FILENAME = "junit.xml"
FAILING = ("leak", "native-leak")
_TOP = 5
# Characters XML 1.0 cannot carry at all, even escaped (a source line or a parameter could hold one).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: object) -> str:
    return _NOT_XML.sub("\ufffd", "" if text is None else str(text))


def scenario_name(report: Report) -> str:
    locustfile = report.parameters.get("locustfile")
    if isinstance(locustfile, str) and locustfile:
        return PurePath(locustfile).stem
    return "memsoak"


def _details(report: Report) -> str:
    lines = [
        report.verdict.explanation,
        f"rule {report.verdict.rule}, confidence {report.verdict.confidence:.2f}",
        f"requests: {report.requests.measured} measured, {report.requests.warmup} warm-up, "
        f"{report.requests.failed} failed",
        f"RSS {human_bytes(report.rss.start)} -> {human_bytes(report.rss.end)} "
        f"({report.rss.per_request:,.1f} B/request); traced {human_bytes(report.traced.start)} -> "
        f"{human_bytes(report.traced.end)} ({report.traced.per_request:,.1f} B/request)",
    ]
    for s in report.suspects[:_TOP]:
        lines.append(f"suspect {s.file}:{s.line}  {s.code}  {s.bytes_per_request:,.1f} B/request")
        if s.user_frame is not None:
            lines.append(f"  called from {s.user_frame.file}:{s.user_frame.line}  {s.user_frame.code}")
    for row in report.workers:
        if row.suspects:
            grew = ", ".join(
                f"#{s.rank} {s.bytes_per_request:,.1f} B/request ({s.share:.0%})" for s in row.suspects
            )
            lines.append(f"worker {row.pid} ({row.requests_served} requests): {grew}")
    return _x("\n".join(lines) + "\n")


def _time(report: Report) -> float:
    elapsed = [s.elapsed_s for s in report.samples]
    return max(elapsed) if elapsed else 0.0


def render(report: Report, file: TextIO) -> None:
    kind = report.verdict.kind
    failing = kind in FAILING
    skipped = kind == "inconclusive"
    suite = ET.Element(
        "testsuite",
        name="memsoak",
        tests="1",
        failures="1" if failing else "0",
        errors="0",
        skipped="1" if skipped else "0",
        time=f"{_time(report):.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in sorted(report.parameters.items()):
        ET.SubElement(properties, "property", name=_x(key), value=_x(value))
    case = ET.SubElement(
        suite,
        "testcase",
        classname=_x(f"memsoak.{scenario_name(report)}"),
        name=f"no memory leak over {report.requests.measured} requests",
        time=f"{_time(report):.3f}",
    )
    details = _details(report)
    if failing:
        failure = ET.SubElement(
            case, "failure", message=_x(f"{kind}: {report.verdict.explanation}"), type=kind
        )
        failure.text = details
    elif skipped:
        ET.SubElement(case, "skipped", message=_x(f"inconclusive: {report.verdict.explanation}"))
    ET.SubElement(case, "system-out").text = details
    suites = ET.Element("testsuites", name="memsoak", tests="1", failures=suite.get("failures", "0"))
    suites.append(suite)
    ET.indent(suites)
    file.write('<?xml version="1.0" encoding="utf-8"?>\n')
    file.write(ET.tostring(suites, encoding="unicode"))
    file.write("\n")
