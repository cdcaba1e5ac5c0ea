"""The app of the ujson_buffer_leak target and its twin (not a target itself): a report export
serialised with ujson, `ujson` being the pinned release the target passes in."""

import datetime
from types import ModuleType

from flask import Flask, request


def make_app(ujson: ModuleType) -> Flask:
    app = Flask(__name__)

    @app.route("/")
    def index() -> str:
        number = int(request.args.get("i", "0"))
        rows: list[dict[str, object]] = [{"id": number, "note": "x" * 11_000}]
        if number % 8 == 0:  # one export in eight has a value ujson cannot encode
            rows.append({"at": datetime.datetime(2024, 1, 1)})
        try:
            return str(ujson.dumps(rows))  # planted
        except TypeError:
            return "cannot export"

    return app
