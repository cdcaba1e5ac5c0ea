"""A registry inside a library: a Prometheus counter given a label value per request.

Per request: `GET /?i=N` counts the request in `hits`, a prometheus_client Counter labelled by
the request's item, so each request makes a new child Counter (with its value, lock and label
tuple). The Counter keeps every child it ever made in its `_metrics` dict for the life of the
process: an unbounded label value is a leak inside the library, and the line to fix is the app's
`labels(...)` call.

Expected verdict: leak
Planted line: metric_labels.py:25
Retention kind: reachable
Retention holder: hits._metrics
"""

from flask import Flask, request
from prometheus_client import CollectorRegistry, Counter

app = Flask(__name__)
# Its own registry: the process-wide default one would refuse a second `hits` in a test process.
hits = Counter("hits", "Requests served, by item", ["item"], registry=CollectorRegistry())


@app.route("/")
def index() -> str:
    hits.labels(item=request.args.get("i", "0")).inc()  # planted
    return "ok"
