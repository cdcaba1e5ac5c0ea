"""A helper two routes share; only one of them passes it a long-lived container.

Per request: `GET /orders` and `GET /preview` (alternately) both call `record_event(sink, ...)`,
which appends a ~300-byte event record to `sink`. `/orders` passes the module-level `_audit_log`,
so its events live forever; `/preview` passes a list local to the request, freed when it ends.
The leak's traceback must go through `orders`, not `preview`.

Expected verdict: leak
Planted line: shared_helper.py:21
Planted caller: orders
Paths: /orders,/preview
"""

from flask import Flask, request

app = Flask(__name__)
_audit_log: list[dict[str, str]] = []


def record_event(sink: list[dict[str, str]], kind: str, key: str) -> None:
    sink.append({"kind": kind, "key": key, "note": "x" * 200 + key})  # planted


@app.route("/orders")
def orders() -> str:
    record_event(_audit_log, "order", request.args.get("i", ""))
    return "ordered"


@app.route("/preview")
def preview() -> str:
    scratch: list[dict[str, str]] = []
    record_event(scratch, "preview", request.args.get("i", ""))
    return str(len(scratch))
