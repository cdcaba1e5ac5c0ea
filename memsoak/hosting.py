"""What every server of a target needs, whichever runs it (gevent's in one process, forked
workers, uvicorn, the bench's bare server): the app imported from MODULE:ATTR, whether it speaks
ASGI or WSGI, and a listening socket. Apart from `memsoak.serve`, which patches the standard
library with gevent on import (uvicorn's asyncio loop must not run on gevent's hub).

`python -m memsoak.hosting MODULE:ATTR [APP_DIR]` prints `asgi` or `wsgi`: the launcher of a
multi-worker target asks it so in a fresh interpreter, before choosing the workers' class, and
imports nothing of the app itself.
"""

from __future__ import annotations

import importlib
import inspect
import os
import socket
import sys
from typing import Any

from memsoak.errors import MemsoakError

INTERFACES = ("auto", "asgi", "wsgi")


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise MemsoakError(f"--bind must be HOST:PORT, got {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def load_app(spec: str, app_dir: str | None) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise MemsoakError(f"--app must be MODULE:ATTR, got {spec!r}")
    if app_dir:
        sys.path.insert(0, os.path.abspath(app_dir))
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import-time failure is the app's, reported in one line
        raise MemsoakError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    app = getattr(module, attr, None)
    if not callable(app):
        raise MemsoakError(f"{module_name!r} has no WSGI or ASGI callable named {attr!r}")
    return app


def is_asgi(app: Any) -> bool:
    """An ASGI 3 app is a coroutine function, or an object whose `__call__` is one (FastAPI,
    Starlette, Django's ASGIHandler); the same test as uvicorn's `--interface auto`, which
    tells ASGI 3 from ASGI 2 by it. Anything else callable is taken for WSGI."""
    if inspect.isclass(app):
        return False
    if inspect.isfunction(app) or inspect.ismethod(app):
        return inspect.iscoroutinefunction(app)
    # The class's __call__, as uvicorn reads it: an instance attribute would not be called.
    return inspect.iscoroutinefunction(getattr(type(app), "__call__", None))  # noqa: B004


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        raise MemsoakError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Accepted sockets inherit this. Without it keep-alive clients stall ~40 ms per response
    # (Nagle against delayed ACK): 223 req/s instead of 7,900 (DESIGN.md, measured facts).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def probe_interface(spec: str, app_dir: str | None) -> str:
    """ "asgi" or "wsgi", told by importing the app in a fresh interpreter (see the module's doc)."""
    import subprocess

    command = [sys.executable, "-m", "memsoak.hosting", spec, *([app_dir] if app_dir else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["cannot load the app"]
        raise MemsoakError(lines[-1].removeprefix("memsoak serve: error: "))
    return done.stdout.strip()


def _probe(argv: list[str]) -> int:
    try:
        app = load_app(argv[0], argv[1] if len(argv) > 1 else None)
    except MemsoakError as exc:
        print(f"memsoak serve: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print("asgi" if is_asgi(app) else "wsgi")
    return 0


if __name__ == "__main__":
    sys.exit(_probe(sys.argv[1:]))
