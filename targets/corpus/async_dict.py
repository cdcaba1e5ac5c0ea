"""A dict filled per request in an `async def` route (FastAPI, served by uvicorn).

Per request: `GET /?i=N` awaits a lookup and stores a ~400-byte session record for key N in the
module-level `_sessions` dict, which nothing ever empties: about 500 bytes per request for the
life of the process.

Expected verdict: leak
Planted line: async_dict.py:24
"""

import asyncio

from fastapi import FastAPI

app = FastAPI()
_sessions: dict[str, str] = {}


@app.get("/")
async def index(i: str = "0") -> dict[str, int]:
    await asyncio.sleep(0)  # a real await: the route yields to the loop like any I/O-bound one
    key = f"session-{i}"
    if key not in _sessions:
        _sessions[key] = f"<session id='{i}'>" + "." * 360 + key  # planted
    return {"sessions": len(_sessions)}
