"""The app of the ujson_default_leak target and its twin (not a target itself): orders
serialised by ujson with a `default` that needs two calls (an Order becomes a Price, and the
Price a dict). `ujson` is the pinned release the target passes in."""

from types import ModuleType
from typing import Any

from flask import Flask, request

PAGE = 10


class Order:
    def __init__(self, number: int) -> None:
        self.number = number


class Price:
    def __init__(self, cents: int, detail: dict[str, Any]) -> None:
        self.cents = cents
        self.detail = detail


def make_app(ujson: ModuleType) -> Flask:
    app = Flask(__name__)

    def encode(obj: Any) -> Any:
        if isinstance(obj, Order):
            return Price(obj.number * 100, {"order": obj.number, "lines": [obj.number] * 16})  # planted
        if isinstance(obj, Price):
            return [obj.cents, obj.detail["lines"]]
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    @app.route("/")
    def index() -> str:
        number = int(request.args.get("i", "0"))
        # A page of orders, each through two calls of `default` (an Order, then its Price).
        orders = [Order(number * PAGE + n) for n in range(PAGE)]
        return str(ujson.dumps(orders, default=encode))

    return app
