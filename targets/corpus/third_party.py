"""A leak inside a third-party library (werkzeug's URL routing), driven by the app's use of it.

Per request: `GET /?i=N` registers a per-tenant rule on a module-level `werkzeug.routing.Map`
and matches against it. `Map.add` keeps each `Rule` (its compiled parts, converters, regex and
state-machine nodes) inside werkzeug for the life of the map: the memory is allocated in
werkzeug's code, but the line to fix is the app's `tenant_routes.add(...)`, which is the first
frame in the user's own code. What keeps it is reachable from the app's module global
`tenant_routes`, through the Map's table of rules by endpoint (each Rule also keeps its own
bound builders, a cycle the search goes past).

Expected verdict: leak
Planted line: third_party.py:27
Retention kind: reachable
Retention holder: tenant_routes._rules_by_endpoint
"""

from flask import Flask, request
from werkzeug.routing import Map, Rule

app = Flask(__name__)
tenant_routes = Map()


@app.route("/")
def index() -> str:
    tenant = request.args.get("i", "0")
    tenant_routes.add(Rule(f"/tenant-{tenant}/<int:item>", endpoint=f"tenant-{tenant}"))  # planted
    endpoint, _args = tenant_routes.bind("localhost").match(f"/tenant-{tenant}/1")
    return str(endpoint)
