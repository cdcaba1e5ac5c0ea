"""A thread started per request, which ends before the response.

Per request: `GET /?i=N` starts a worker thread (a greenlet under gevent's patched `threading`)
that builds a ~2 KB result, joins it and returns. The thread, its result and its frame are
freed when it ends.

Expected verdict: no-leak
"""

import threading

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def index() -> str:
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append("r" * 2000 + request_id), daemon=True)
    request_id = request.args.get("i", "0")
    worker.start()
    worker.join(timeout=5)
    return str(len(result[0]) if result else 0)
