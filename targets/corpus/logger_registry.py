"""A registry inside the standard library: a logger named after each request.

Per request: `GET /?i=N` asks `logging.getLogger(f"req.{N}")` for a logger and logs a debug line
with it. logging keeps every Logger it ever made in `logging.Logger.manager.loggerDict`, and each
Logger fills its own level cache on first use: memory grows inside logging's code (the Logger,
its `_cache` dict, the registry's own table), all kept by that one registry. The line to fix is
the app's getLogger call, not the `log.debug` line that fills the cache.

Expected verdict: leak
Planted line: logger_registry.py:24
Retention kind: reachable
Retention holder: logging.Logger.manager.loggerDict
"""

import logging

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def index() -> str:
    log = logging.getLogger(f"req.{request.args.get('i', '0')}")  # planted
    log.debug("serving %s", request.path)
    return "ok"
