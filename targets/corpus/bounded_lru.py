"""A bounded LRU cache that fills, then plateaus.

Per request: `GET /?i=N` calls a lookup memoised with `functools.lru_cache(maxsize=256)` with N.
Every argument is new, so every call stores a ~600-byte result, but the cache evicts its oldest
entry past 256: its memory stops growing after 256 requests (during warm-up).

Expected verdict: no-leak
"""

import functools

from flask import Flask, request

app = Flask(__name__)


@functools.lru_cache(maxsize=256)
def permissions_for(user: str) -> list[str]:
    return [f"perm-{user}"] * 64


@app.route("/")
def index() -> str:
    return str(len(permissions_for(request.args.get("i", "0"))))
