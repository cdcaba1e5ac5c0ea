"""A native leak in a real release: pydantic 2.5.2's Rust core (pydantic-core 2.14.5) leaks each
validator built for a self-referencing model (pydantic/pydantic#8397).

Per request: `GET /` builds `TypeAdapter(list[Node])` for a recursive model and validates one
item with it. With the leaking release installed, the adapter's Rust validator is never freed: RSS
grows about 8 KB a request while traced memory stays flat. With the fixed release (pydantic 2.5.3,
pydantic-core 2.14.6) nothing grows. The releases come from the requirements files beside this
file, installed by the test into a directory of their own (`--app-dir`).

Expected verdict: native-leak with tests/native/requirements-pydantic-leaking.txt, no-leak with
requirements-pydantic-fixed.txt
Planted line: pydantic_app.py:34
"""

from __future__ import annotations

from flask import Flask
from pydantic import BaseModel, TypeAdapter

app = Flask(__name__)


class Leaf(BaseModel):
    name: str = "leaf"


class Node(BaseModel):
    children: list[Node]
    leaf: Leaf


@app.route("/")
def index() -> str:
    adapter = TypeAdapter(list[Node])  # planted
    nodes = adapter.validate_python([{"children": [], "leaf": Leaf()}])
    return str(len(nodes))
