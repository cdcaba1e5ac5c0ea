"""Reference cycles left to the cycle collector.

Per request: `GET /?i=N` builds a small tree of nodes whose children point back at their parent
(a cycle), with ~2 KB of data, and drops it. Reference counting alone cannot free it; the cycle
collector does, some requests later. Memory rises between collections, never for good.

Expected verdict: no-leak
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


class Node:
    def __init__(self, parent: Node | None, data: str) -> None:
        self.parent = parent
        self.children: list[Node] = []
        self.data = data
        if parent is not None:
            parent.children.append(self)


@app.route("/")
def index() -> str:
    root = Node(None, request.args.get("i", "0"))
    for n in range(8):
        Node(root, f"child {n} " * 30)
    return str(len(root.children))
