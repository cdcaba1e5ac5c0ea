"""A leak inside the framework (Starlette's routing), driven by the app's use of it.

Per request: `GET /?i=N` registers a per-tenant route on the module-level `Router` with
`add_route` and looks it up. Starlette compiles each route's path into a regex, a format string
and converters (starlette/routing.py) and keeps the `Route` for the life of the router: the
memory is allocated in Starlette's code, but the line to fix is the app's `add_route` call, the
first frame in the user's own code.

Expected verdict: leak
Planted line: async_routes.py:31
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router

tenant_routes = Router()


async def tenant_home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("home")


def route_count() -> int:
    return len(tenant_routes.routes)


async def index(request: Request) -> PlainTextResponse:
    tenant = request.query_params.get("i", "0")
    tenant_routes.add_route(f"/tenant-{tenant}/{{item:int}}", tenant_home)  # planted
    return PlainTextResponse(str(route_count()))


app = Starlette(routes=[Route("/", index)])
