"""The agent installed as one line in a FastAPI app's own module, served by plain uvicorn
(`MEMSOAK_TOKEN=... uvicorn targets.asgi.one_line:app`), driven by `memsoak run --host`.

Per request: `GET /?i=N` appends a ~600-byte order record to the module-level `_orders` list.

Expected verdict: leak
Planted line: one_line.py:22
"""

import os

from fastapi import FastAPI

import memsoak.agent

api = FastAPI()
_orders: list[str] = []


@api.get("/")
async def index(i: str = "0") -> dict[str, int]:
    _orders.append(f"order {i}: " + "-" * 580)  # planted
    return {"orders": len(_orders)}


app = memsoak.agent.AsgiAgent(api, token=os.environ["MEMSOAK_TOKEN"])
