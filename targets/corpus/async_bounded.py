"""A bounded cache in an `async def` route: the look-alike of async_dict (FastAPI).

Per request: `GET /?i=N` stores a ~400-byte record for key N in a module-level OrderedDict that
evicts its oldest entry past 256. Every key is new, so it fills during warm-up, then holds 256
entries for the rest of the run: its memory stops growing.

Expected verdict: no-leak
"""

import asyncio
from collections import OrderedDict

from fastapi import FastAPI

app = FastAPI()
LIMIT = 256
_recent: OrderedDict[str, str] = OrderedDict()


@app.get("/")
async def index(i: str = "0") -> dict[str, int]:
    await asyncio.sleep(0)
    key = f"session-{i}"
    _recent[key] = f"<session id='{i}'>" + "." * 360 + key
    _recent.move_to_end(key)
    while len(_recent) > LIMIT:
        _recent.popitem(last=False)
    return {"recent": len(_recent)}
