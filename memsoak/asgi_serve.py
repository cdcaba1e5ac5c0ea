"""Serve an ASGI app (FastAPI, Starlette, Django's ASGI application) under the agent in uvicorn:
`python -m memsoak.asgi_serve MODULE:ATTR`, with the options of `memsoak.serve` (which hands an
ASGI app over to this module). Prints the same JSON ready line once uvicorn has started (its
lifespan startup done), then serves until SIGTERM or SIGINT.

No gevent here: uvicorn runs an asyncio loop, and gevent's patches would put that loop's
selector on gevent's hub.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memsoak.agent import tracing
from memsoak.agent.asgi import AsgiAgent
from memsoak.agent.middleware import LOOPBACK
from memsoak.errors import MemsoakError
from memsoak.hosting import listen, load_app, parse_bind

EXIT_NOT_STARTED = 3  # the app loaded but uvicorn did not start it (its lifespan startup failed)


@dataclass(frozen=True, slots=True)
class AsgiTarget:
    """What to serve and how: the options `memsoak.serve` was given, handed over whole."""

    spec: str
    app_dir: str | None
    bind: str
    token: str
    print_token: bool
    frames: int
    trace: bool
    allow: tuple[str, ...]
    quick_exit: bool = False


def serve_asgi(target: AsgiTarget) -> int:
    import uvicorn

    host, port = parse_bind(target.bind)
    tracing.configured_frames = target.frames
    if target.trace:
        # Before the app is imported, so import-time allocations carry full tracebacks too.
        tracemalloc.start(target.frames)
    # Taken for ASGI as told (--interface asgi): an app that is not fails its requests, and the
    # run says so (requests-failed).
    app = load_app(target.spec, target.app_dir)
    sock = listen(host, port)
    config = uvicorn.Config(
        AsgiAgent(app, target.token, allow=target.allow),
        interface="asgi3",
        lifespan="auto",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    ready: dict[str, Any] = {"url": f"http://{shown_host}:{bound_port}", "pid": os.getpid()}
    if target.print_token:
        ready["token"] = target.token
    for signum in (signal.SIGTERM, signal.SIGINT):
        # uvicorn handles these itself while it serves, then raises the signal again under the
        # handler it found: this one, so that a stop is exit 0 as under `memsoak.serve`. One
        # that comes before uvicorn's own handlers are in still stops it.
        signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
    started = asyncio.run(_serve(server, sock, ready))
    if target.quick_exit:
        gc.freeze()  # as memsoak.serve: no whole-heap collections at exit
    if not started:
        print("memsoak serve: error: uvicorn did not start the app (see above)", file=sys.stderr, flush=True)
        return EXIT_NOT_STARTED
    return 0


async def _serve(server: Any, sock: Any, ready: dict[str, Any]) -> bool:
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(json.dumps(ready), flush=True)
    await task
    return bool(server.started)


def exec_asgi(target: AsgiTarget) -> int:
    """Replace this (gevent-patched) process with a fresh interpreter serving `spec` in uvicorn:
    the same pid, so the launcher's signals and ready-line reading still reach it."""
    command = [sys.executable, "-m", "memsoak.asgi_serve", target.spec, "--bind", target.bind,
               "--frames", str(target.frames)]  # fmt: skip
    if target.app_dir:
        command += ["--app-dir", target.app_dir]
    flags = (
        ("--no-trace", not target.trace),
        ("--quick-exit", target.quick_exit),
        ("--print-token", target.print_token),
    )
    command += [flag for flag, on in flags if on]
    for network in target.allow:
        command += ["--allow", network]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, {**os.environ, "MEMSOAK_TOKEN": target.token})
    return 0  # not reached


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memsoak serve", description=__doc__.splitlines()[0])
    parser.add_argument("app", metavar="MODULE:ATTR")
    parser.add_argument("--app-dir")
    parser.add_argument("--bind", default="127.0.0.1:0")
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--no-trace", dest="trace", action="store_false")
    parser.add_argument("--quick-exit", action="store_true")
    parser.add_argument("--print-token", action="store_true")
    parser.add_argument("--allow", action="append", metavar="CIDR")
    args = parser.parse_args(argv)
    try:
        return serve_asgi(
            AsgiTarget(
                args.app, args.app_dir, args.bind, os.environ["MEMSOAK_TOKEN"], args.print_token,
                args.frames, args.trace, tuple(args.allow) if args.allow else LOOPBACK, args.quick_exit,
            )
        )  # fmt: skip
    except MemsoakError as exc:
        print(f"memsoak serve: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
