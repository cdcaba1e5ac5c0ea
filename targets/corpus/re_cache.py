"""Unique regular expressions per request: `re`'s internal cache is bounded.

Per request: `GET /?i=N` compiles a pattern containing N with `re.match(pattern, ...)`. The
pattern is new every time, so `re` compiles and caches it; the cache holds at most 512 patterns
and evicts the oldest, so its memory flattens after 512 requests. A two-snapshot diff blames
`re`; checkpoints show the plateau.

Expected verdict: no-leak
"""

import re

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def index() -> str:
    order = request.args.get("i", "0")
    match = re.match(rf"order-{order}-(\d+)", f"order-{order}-42")
    return match.group(1) if match else "none"
