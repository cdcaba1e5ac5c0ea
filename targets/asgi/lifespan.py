"""A Starlette app with a lifespan, for the ASGI agent's door: startup opens a "pool" that every
request reads, shutdown closes it and says so on stderr. Under the agent, `GET /` answering
`pool open` and the shutdown line in the log show lifespan passed through both ways.

Expected verdict: no-leak
"""

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
    yield {"pool": "open"}
    print("lifespan: pool closed", file=sys.stderr, flush=True)


async def index(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"pool {request.state.pool}")


async def client(request: Request) -> PlainTextResponse:
    # What the app sees as its client: the agent must not change what the app gets.
    return PlainTextResponse(request.client.host if request.client else "")


app = Starlette(routes=[Route("/", index), Route("/client", client)], lifespan=lifespan)
