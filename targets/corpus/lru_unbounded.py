"""functools.lru_cache(maxsize=None) on arguments that are unique per request.

Per request: `GET /?i=N` calls a memoised lookup with N. With `maxsize=None` the cache never
evicts, so it keeps every result (a ~600-byte list) and its key forever.

Expected verdict: leak
Planted line: lru_unbounded.py:19
"""

import functools

from flask import Flask, request

app = Flask(__name__)


@functools.lru_cache(maxsize=None)  # noqa: UP033 - the form people write
def permissions_for(user: str) -> list[str]:
    return [f"perm-{user}"] * 64  # planted


@app.route("/")
def index() -> str:
    return str(len(permissions_for(request.args.get("i", "0"))))
