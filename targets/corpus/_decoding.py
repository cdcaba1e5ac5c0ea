"""The app of the traceback_leak target and its twin (not a target itself): a view that hands the
request's payload to a C decoder, given as `decode(parse, data)`."""

import json
from collections.abc import Callable
from typing import Any

from flask import Flask, request


def make_app(decode: Callable[[Callable[[str], Any], str], Any]) -> Flask:
    app = Flask(__name__)

    @app.route("/")
    def index() -> str:
        number = request.args.get("i", "0")
        # One request in two carries a malformed document, as a client's bad input would.
        payload = f"[{number}]" if int(number) % 2 else f"{{{number}"
        try:
            decode(json.loads, payload)  # planted
        except ValueError:
            return "bad payload"
        return "ok"

    return app
