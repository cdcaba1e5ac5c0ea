"""Background tasks that finish and are dropped: the look-alike of async_tasks.

Per request: `GET /?i=N` starts an audit task with `asyncio.create_task` and keeps it in the
module-level `_running` set while it runs, as asyncio's documentation advises; the task's done
callback discards it. The set never holds more than the tasks in flight (a handful), so nothing
grows with the request count.

Expected verdict: no-leak
"""

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

_running: set[asyncio.Task[str]] = set()


async def audit(i: str) -> str:
    await asyncio.sleep(0)
    return f"audited {i}"


async def index(request: Request) -> PlainTextResponse:
    task = asyncio.create_task(audit(request.query_params.get("i", "0")))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return PlainTextResponse(str(len(_running)))


app = Starlette(routes=[Route("/", index)])
