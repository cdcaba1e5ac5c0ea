"""A slow, leaky target for fault tests: runs long enough to be killed, stopped or interrupted.

Per request: `GET /` sleeps 10 ms (cooperatively, under gevent) and appends 8 KiB to a
module-level list that is never emptied (line 23), and every 50th request writes a progress line
to stderr, so a run that ends badly has a target log whose last lines say how far it got.

Expected verdict: leak
Planted line: slow_leak.py:23
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

_kept: list[bytes] = []


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    time.sleep(0.01)
    _kept.append(b"x" * 8192)
    if len(_kept) % 50 == 0:
        print(f"slow_leak: served {len(_kept)} requests, keeping {len(_kept) * 8192} bytes", file=sys.stderr)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % len(_kept)]
