"""asyncio tasks kept in a module-level set and never discarded (Starlette, served by uvicorn).

Per request: `GET /?i=N` starts an audit task with `asyncio.create_task` and adds it to the
module-level `_audits` set "so it is not garbage collected", as asyncio's documentation advises,
but never discards it when it is done. Each finished Task (with its coroutine, context and result)
stays alive: a few hundred bytes per request. The Task is allocated inside asyncio (the stdlib),
so the line to blame is the first frame in the app's own code: the `create_task` call.

Expected verdict: leak
Planted line: async_tasks.py:30
"""

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

_audits: set[asyncio.Task[str]] = set()


async def audit(i: str) -> str:
    await asyncio.sleep(0)
    return f"audited {i}"


async def index(request: Request) -> PlainTextResponse:
    i = request.query_params.get("i", "0")
    _audits.add(asyncio.create_task(audit(i)))  # planted
    return PlainTextResponse(str(len(_audits)))


app = Starlette(routes=[Route("/", index)])
