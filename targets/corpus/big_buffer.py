"""A multi-megabyte buffer allocated, written and freed on every request.

Per request: `GET /` builds a 4 MB bytearray, fills it, checksums a slice and drops it when the
view returns. Traced memory and RSS jump by 4 MB during a request and fall back after it.

Expected verdict: no-leak
"""

from flask import Flask

app = Flask(__name__)
SIZE = 4 * 1024 * 1024


@app.route("/")
def index() -> str:
    buffer = bytearray(SIZE)
    buffer[:] = b"\x5a" * SIZE
    return str(sum(buffer[:64]))
