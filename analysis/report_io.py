"""Reading report.json back (schema_version 1, DESIGN.md): for tools that compare or collect
reports. Checks the contract's fields and their types, and gives the parsed document back as
plain JSON data; fields it does not know are kept. Anything else is one ReportFormatError.
"""

from __future__ import annotations

import json
import math
from typing import Any

SCHEMA_VERSION = 1
VERDICTS = ("leak", "no-leak", "native-leak", "inconclusive")
_INT_LIMIT = 2**63


class ReportFormatError(ValueError):
    """The document is not a memsoak report this version can read."""


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportFormatError(f"{where} must be a JSON object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ReportFormatError(f"{where} must be a list")
    return value


def _int(value: Any, where: str, *, signed: bool = False) -> int:
    if type(value) is not int or not (-_INT_LIMIT if signed else 0) <= value < _INT_LIMIT:
        kind = "an integer" if signed else "a non-negative integer"
        raise ReportFormatError(f"{where} must be {kind}, got {value!r:.60}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportFormatError(f"{where} must be a number, got {value!r:.60}")
    try:
        result = float(value)
    except OverflowError:
        raise ReportFormatError(f"{where} is out of range") from None
    if not math.isfinite(result):
        raise ReportFormatError(f"{where} must be finite")
    return result


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ReportFormatError(f"{where} must be a string")
    return value


def _check_frame(raw: Any, where: str) -> None:
    frame = _object(raw, where)
    _str(frame.get("file"), f"{where}.file")
    _int(frame.get("line"), f"{where}.line")
    _str(frame.get("function"), f"{where}.function")


def _check_suspect(raw: Any, where: str) -> None:
    suspect = _object(raw, where)
    _str(suspect.get("file"), f"{where}.file")
    _int(suspect.get("line"), f"{where}.line")
    _str(suspect.get("code"), f"{where}.code")
    _int(suspect.get("size_diff"), f"{where}.size_diff", signed=True)
    _int(suspect.get("count_diff"), f"{where}.count_diff", signed=True)
    _number(suspect.get("bytes_per_request"), f"{where}.bytes_per_request")
    for index, frame in enumerate(_list(suspect.get("traceback"), f"{where}.traceback")):
        _check_frame(frame, f"{where}.traceback[{index}]")


def report_from_dict(doc: Any) -> dict[str, Any]:
    report = _object(doc, "a report")
    version = report.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ReportFormatError(f"unsupported report schema_version {version!r:.40}")
    if report.get("verdict") not in VERDICTS:
        raise ReportFormatError(
            f"verdict must be one of {', '.join(VERDICTS)}, got {report.get('verdict')!r:.40}"
        )
    requests = _object(report.get("requests"), "requests")
    for key in ("warmup", "measured", "failed"):
        _int(requests.get(key), f"requests.{key}")
    for name in ("rss_bytes", "traced_bytes"):
        trend = _object(report.get(name), name)
        _int(trend.get("start"), f"{name}.start")
        _int(trend.get("end"), f"{name}.end")
        _number(trend.get("per_request"), f"{name}.per_request")
    for index, suspect in enumerate(_list(report.get("suspects"), "suspects")):
        _check_suspect(suspect, f"suspects[{index}]")
    for index, raw in enumerate(_list(report.get("checkpoints"), "checkpoints")):
        checkpoint = _object(raw, f"checkpoints[{index}]")
        for key in ("requests", "rss_bytes", "traced_bytes"):
            _int(checkpoint.get(key), f"checkpoints[{index}].{key}")
    events = report.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ReportFormatError("events must be a list of strings")
    return report


def loads_report(text: str | bytes) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ReportFormatError(f"not valid JSON: {exc}"[:200]) from None
    return report_from_dict(doc)
