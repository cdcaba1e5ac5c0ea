"""report.json, schema_version 1 (the contract in DESIGN.md; fields may be added, never renamed)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, TextIO

from analysis.model import Frame, RetentionPath, Suspect
from analysis.native import NativeWindow
from analysis.report import Report
from analysis.trend import Trend

FORMAT = "json"
FILENAME = "report.json"


def _frame(frame: Frame) -> dict[str, Any]:
    return {"file": frame.file, "line": frame.line, "function": frame.function, "code": frame.code}


def _native(window: NativeWindow) -> dict[str, Any]:
    """report.json's `native` (DESIGN.md): frames innermost first, line null where unknown."""
    return {
        "requests": window.requests,
        "explained_share": window.explained_share,
        "rss_growth_bytes": window.rss_growth_bytes,
        "leaked_bytes": window.leaked_bytes,
        "processes": window.processes,
        "timed_out": window.timed_out,
        "note": window.note,
        "sites": [
            {
                "bytes_per_request": s.bytes_per_request,
                "count_per_request": s.count_per_request,
                "stack": [{"function": f.function, "file": f.file, "line": f.line} for f in s.stack],
            }
            for s in window.sites
        ],
    }


def _trend(trend: Trend) -> dict[str, Any]:
    return {
        "start": trend.start,
        "end": trend.end,
        "per_request": trend.per_request,
        "fit": {"method": trend.method, "points": trend.points},
    }


def _suspect(suspect: Suspect) -> dict[str, Any]:
    return {
        "file": suspect.file,
        "line": suspect.line,
        "code": suspect.code,
        "size_diff": suspect.size_diff,
        "count_diff": suspect.count_diff,
        "bytes_per_request": suspect.bytes_per_request,
        "objects_per_request": suspect.objects_per_request,
        "traceback": [_frame(f) for f in suspect.traceback],
        "user_frame": _frame(suspect.user_frame) if suspect.user_frame else None,
        "paths_seen": suspect.paths_seen,
        "path_kept": suspect.path_kept,
        "growth": list(suspect.growth),
        "steady": suspect.steady,
        "fit": {
            "per_request": suspect.fit_per_request,
            "method": "theil-sen",
            "late_ratio": suspect.late_ratio,
            "grew_share": suspect.grew_share,
        },
        "retention": _retention(suspect.retention),
        "members": [
            {"file": m.file, "line": m.line, "bytes_per_request": m.bytes_per_request}
            for m in suspect.members
        ],
    }


def _retention(path: RetentionPath | None) -> dict[str, Any] | None:
    if path is None:
        return None
    return {
        "kind": path.kind,
        "created_at": (
            {"file": path.created_at.file, "line": path.created_at.line, "function": path.created_at.function}
            if path.created_at
            else None
        ),
        "holder": path.holder,
        "found": path.found,
        "method": path.method,
        "root": path.root,
        "steps": list(path.steps),
        "held": {"type": path.held_type, "length": path.held_length, "size": path.held_size},
        "objects": path.objects,
        "truncated": path.truncated,
        "note": path.note,
        "summary": path.summary,
    }


def _requests(report: Report) -> dict[str, int]:
    """DESIGN.md's three counts; `window` only for a run with windows after its measured
    requests, `failed_warmup` only when warm-up requests failed."""
    counts = asdict(report.requests)
    for optional in ("window", "failed_warmup"):
        if not counts[optional]:
            del counts[optional]
    return counts


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "schema_version": report.schema_version,
        "verdict": report.verdict.kind,
        "confidence": report.verdict.confidence,
        "rule": report.verdict.rule,
        "explanation": report.verdict.explanation,
        "requests": _requests(report),
        "rss_bytes": _trend(report.rss),
        "traced_bytes": _trend(report.traced),
        "suspects": [_suspect(s) for s in report.suspects],
        "checkpoints": [
            {
                "requests": c.requests,
                "rss_bytes": c.rss_bytes,
                "traced_bytes": c.traced_bytes,
                "pause_s": c.pause_s,
            }
            for c in report.checkpoints
        ],
        "samples": [asdict(s) for s in report.samples],
        "thresholds": asdict(report.thresholds),
        "parameters": report.parameters,
        "locust_stats": report.locust_stats,
        "events": list(report.events),
        # Per process of a multi-worker target; "suspects": the top merged suspects in that
        # process ({file, line, rank, size_diff, bytes_per_request, share}).
        "workers": [asdict(w) for w in report.workers],
        # The first failed measured requests ({name, status, error}; status 0: no response) and
        # the last exception lines of the target's log.
        "failures": [asdict(f) for f in report.failures],
        "target_errors": list(report.target_errors),
        # What ran, in order: {name, requests, frames (0: untraced), took}.
        "phases": [asdict(p) for p in report.phases],
        **({"native": _native(report.native)} if report.native is not None else {}),
    }


def render(report: Report, file: TextIO) -> None:
    json.dump(report_to_dict(report), file, indent=2, default=str)
    file.write("\n")
