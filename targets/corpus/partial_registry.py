"""A functools.partial kept in a global registry.

Per request: `GET /?i=N` schedules a "retry" of a notification by storing a
`functools.partial(send, payload)` in the module-level `_retries` dict, keyed by request. Nothing
ever runs or removes the retries, so each one keeps its ~1 KB payload alive.

Expected verdict: leak
Planted line: partial_registry.py:26
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
    payload = key.encode() + b" " * 1000  # planted
    _retries[key] = functools.partial(send, payload)
    return "scheduled"
