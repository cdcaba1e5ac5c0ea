"""A functools.partial kept in a global registry.

Per request: `GET /?i=N` schedules a "retry" of a notification by storing a
`functools.partial(send, payload)` in the module-level `_retries` dict, keyed by request. Nothing
ever runs or removes the retries, so each one keeps its ~1 KB payload alive. The payload's line
and the registry's own line both grow, kept by the one registry: the finding is the line that
makes the registry's item (the partial), with the payload's site listed under it.

Expected verdict: leak
Planted line: partial_registry.py:31
Retention kind: reachable
Retention holder: _retries
"""

import functools

from flask import Flask, request

app = Flask(__name__)
_retries: dict[str, functools.partial[int]] = {}


def send(payload: bytes) -> int:
    return len(payload)


@app.route("/")
def index() -> str:
    key = request.args.get("i", "0")
    payload = key.encode() + b" " * 1000
    _retries[key] = functools.partial(send, payload)  # planted
    return "scheduled"
