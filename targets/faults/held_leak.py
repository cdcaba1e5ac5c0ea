"""The seed leak, served one permit at a time: a test steps the run instead of racing it.

Per request: `GET /` waits until a permit is free, takes it, then runs the seed app (which keeps
5,000 tuple references per request at fetchuserdata.py line 6). `GET /release?n=K` adds K
permits and answers at once with how many were released in all. With no permits the load stands
still, so a test can read what a page or a report shows at an exact request count, and go on
when it has seen it, on a fast machine or a slow one. Every request that got a permit completes,
so after K permits exactly K requests have been served.

Expected verdict: leak
Planted line: fetchuserdata.py:6
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from targets.seed_leak.app import app as seed_app

# Threading's primitives: memsoak serve monkey-patches them with gevent's, so a waiting request
# parks its greenlet, and a thread-per-request server parks its thread.
_permits = threading.Semaphore(0)
_released = 0
_released_lock = threading.Lock()


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    global _released
    if environ.get("PATH_INFO") == "/release":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            count = int(query.get("n", ["1"])[0])
        except ValueError:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"n must be an integer"]
        with _released_lock:
            _released += count
            total = _released
        _permits.release(count)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % total]
    _permits.acquire()
    return seed_app(environ, start_response)
