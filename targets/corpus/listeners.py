"""Callbacks registered per request and never removed.

Per request: `GET /` subscribes a callback to the module-level event bus, with an audit trail
for the request bound to it, meaning to unsubscribe "when the request ends" but never doing so.
The bus keeps every callback, and each callback keeps its trail (~750 bytes).

Expected verdict: leak
Planted line: listeners.py:36
"""

from collections.abc import Callable

from flask import Flask, request

app = Flask(__name__)


class EventBus:
    def __init__(self) -> None:
        self.listeners: list[Callable[[str], None]] = []

    def subscribe(self, callback: Callable[[str], None]) -> None:
        self.listeners.append(callback)

    def publish(self, event: str) -> None:
        if self.listeners:
            self.listeners[-1](event)


bus = EventBus()


@app.route("/")
def index() -> str:
    request_id = request.args.get("i", "")
    bus.subscribe(lambda event, trail=[request_id] * 64: trail.count(event))  # planted
    bus.publish("request")
    return "ok"
