"""A slow steady leak, cheap enough for short soaks.

Per request: `GET /` appends a new 1 KiB bytes object to a module-level list that is never
trimmed (line 19), about 1,060 bytes per request for as long as the process lives.

Expected verdict: leak
Planted line: steady_leak.py:19
"""

from flask import Flask

app = Flask(__name__)
_seen: list[bytes] = []


@app.route("/")
def index() -> str:
    # bytes(n) makes a new object each call, so every request keeps its own kilobyte.
    _seen.append(bytes(1024))
    return f"{len(_seen)} requests remembered"
