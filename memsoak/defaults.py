"""What a run does when it is not told otherwise, and how durations are read. Apart from
`memsoak.locust.options` so that the CLI can use them without importing Locust (which patches the
stdlib with gevent) and the plugin's analysis stack: that import cost every `memsoak run` seconds
before the target even started."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_REQUESTS = 10_000
DEFAULT_WARMUP = 200
DEFAULT_CHECKPOINTS = 5
DEFAULT_SPAWN_RATE = 100.0  # Locust warns above this
DEFAULT_HISTORY = Path("memsoak-out") / "history.sqlite"
DEFAULT_RETENTION_SECONDS = 20.0
# Requests recorded with memray after a native-leak verdict (memsoak/agent/native.py): enough for
# a per-request leak to stand out of one-off blocks by count, few enough that the tracker's cost
# (bench/native_window.py) is paid for seconds.
DEFAULT_NATIVE_WINDOW = 300
MAX_NATIVE_WINDOW = 100_000

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in "8h", "10m", "1h30m", "90s" or "90". ValueError when it is none of those."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(compact):
        match = _DURATION_PART.match(compact, pos)
        if match is None:
            raise ValueError(f"not a duration: {text!r} (e.g. 8h, 10m, 1h30m, 90s)")
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        pos = match.end()
    if not compact or not total > 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return total
