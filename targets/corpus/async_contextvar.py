"""Request state kept in a `contextvars.ContextVar` whose default is one shared list (FastAPI).

Per request: `GET /?i=N` appends a ~300-byte breadcrumb to `breadcrumbs.get()`, meaning to keep
it for this request only. But no request ever sets the variable, so `get()` returns the default,
the same module-level list in every request's context: every breadcrumb of every request stays.
The code reads as per-request state; the memory is the process's.

Expected verdict: leak
Planted line: async_contextvar.py:25
"""

import asyncio
from contextvars import ContextVar

from fastapi import FastAPI

app = FastAPI()
breadcrumbs: ContextVar[list[str]] = ContextVar("breadcrumbs", default=[])  # noqa: B039


@app.get("/")
async def index(i: str = "0") -> dict[str, int]:
    await asyncio.sleep(0)
    trail = breadcrumbs.get()
    trail.append(f"visited /?i={i} " + "." * 260)  # planted
    return {"breadcrumbs": len(trail)}
