"""Unbounded dict cache keyed per request.

Per request: `GET /?i=N` renders a ~400-byte profile string for key N and memoises it in the
module-level `_profiles` dict. Every key is new, nothing is ever evicted: the dict and its strings
grow by ~500 bytes per request for as long as the process lives.

Expected verdict: leak
Planted line: dict_cache.py:19
"""

from flask import Flask, request

app = Flask(__name__)
_profiles: dict[str, str] = {}


def render_profile(key: str) -> str:
    if key not in _profiles:
        _profiles[key] = f"<div class='profile'>{key}</div>" + "." * 360 + key  # planted
    return _profiles[key]


@app.route("/")
def index() -> str:
    return render_profile(request.args.get("i", "0"))[:40]
