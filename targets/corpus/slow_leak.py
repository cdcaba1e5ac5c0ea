"""A slow leak: about 100 bytes per request.

Per request: `GET /?i=N` appends a short request id string (~45 characters) to the module-level
`_seen` list "for de-duplication" and never trims it: ~94 bytes of string plus an 8-byte list
slot per request. After 2,000 requests that is only ~200 KB.

Expected verdict: leak
Planted line: slow_leak.py:19
"""

from flask import Flask, request

app = Flask(__name__)
_seen: list[str] = []


@app.route("/")
def index() -> str:
    _seen.append(f"req-{request.args.get('i', '0'):>40}")  # planted
    return "ok"
