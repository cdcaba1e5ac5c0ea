"""A target that errors: Flask, and `GET /` raises on every other request (an HTTP 500 that
Flask logs with its traceback to stderr). It leaks nothing, and no verdict may pass it: half its
requests did no work.

Expected verdict: inconclusive
Expected rule: requests-failed
"""

from __future__ import annotations

import itertools

from flask import Flask

app = Flask(__name__)
_served = itertools.count()


class LookupBroke(RuntimeError):
    pass


@app.get("/")
def index() -> str:
    if next(_served) % 2:
        raise LookupBroke("the user table is gone")
    return "ok"
