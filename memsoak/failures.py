"""The evidence a `requests-failed` verdict quotes: the first failed requests as Locust saw them,
and the last exception the target wrote to its log."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from analysis.model import RequestFailure

ERROR_CHARS = 200
# A traceback longer than this many lines before its end is cut at the top: its last frame and
# the exception line are what say why.
LOG_TAIL_LINES = 400


def request_failure(request_type: str, name: str, response: Any, exception: Any) -> RequestFailure:
    status = getattr(response, "status_code", 0)
    lines = str(exception).strip().splitlines() or [type(exception).__name__]
    return RequestFailure(
        name=f"{request_type} {name}".strip(),
        status=status if isinstance(status, int) else 0,
        error=lines[0][:ERROR_CHARS],
    )


def exception_lines(log_path: Path) -> list[str]:
    """The last exception in a log: its innermost frame and its `Type: message` line. Empty when
    the log has none (or cannot be read)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as file:
            tail = [line.rstrip("\n") for line in deque(file, maxlen=LOG_TAIL_LINES)]
    except OSError:
        return []
    starts = [i for i, line in enumerate(tail) if line.startswith("Traceback (most recent call last):")]
    if not starts:
        return []
    frame = ""
    for line in tail[starts[-1] + 1 :]:
        if line.startswith("  File "):
            frame = line.strip()
        elif not line.startswith(" ") and line.strip():
            # The first unindented line after the frames is the exception itself.
            return [part[:ERROR_CHARS] for part in (frame, line.strip()) if part]
    return [frame] if frame else []
