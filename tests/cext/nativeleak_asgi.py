"""The native leak of nativeleak_app.py in an ASGI app (Starlette, served by uvicorn: no
greenlets in the target), for the native window where memray's greenlet support cannot run.

Expected verdict: native-leak
Planted line: nativeleak_asgi.py:18 (16,384 bytes per request, native)
"""

import nativeleak
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

BLOCK = 16 * 1024


async def index(request: Request) -> PlainTextResponse:
    nativeleak.leak(BLOCK)  # planted
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/", index)])
