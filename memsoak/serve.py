"""Serve any WSGI app under the agent in gevent's WSGI server: `python -m memsoak.serve MODULE:ATTR`.

gevent must patch the standard library before anything else imports it, hence the first lines.
Prints one JSON line on stdout once it listens: {"url": ..., "pid": ...} (plus "token" when it
made one), then serves until SIGTERM or SIGINT.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from memsoak.agent import tracing  # noqa: E402
from memsoak.agent.middleware import LOOPBACK, Agent  # noqa: E402
from memsoak.errors import MemsoakError  # noqa: E402
from memsoak.hosting import INTERFACES, is_asgi, listen, load_app, parse_bind, probe_interface  # noqa: E402
from memsoak.prefork import ASGI_WORKER_CLASS  # noqa: E402

# Measured (bench/overhead.py, README "Performance"): wrk's req/s against the fixed seed app falls
# from 0.19-0.35x of untraced at 1 frame to 0.09x at 10 and 0.06x at 25. 10 is kept because a
# leak allocated inside a library (werkzeug routing, json, uuid) needs the frames up to the
# user's own line; the cheap paths are the untraced warm-up, --watch and --until-confident.
DEFAULT_FRAMES = 10


def serve(
    spec: str,
    *,
    app_dir: str | None = None,
    bind: str = "127.0.0.1:0",
    token: str | None = None,
    frames: int = DEFAULT_FRAMES,
    trace: bool = True,
    allow: Sequence[str] = LOOPBACK,
    server_kind: str = "gevent",
    workers: int = 1,
    worker_class: str = "sync",
    quick_exit: bool = False,
    interface: str = "auto",
) -> int:
    if interface not in INTERFACES:
        raise MemsoakError(f"--interface must be one of {', '.join(INTERFACES)}, got {interface!r}")
    if not 1 <= frames <= 100:
        raise MemsoakError(f"--frames must be 1..100, got {frames}")
    host, port = parse_bind(bind)
    generated = token is None and not os.environ.get("MEMSOAK_TOKEN")
    # Hex, not urlsafe base64: a token starting with "-" reads as an option on a command line.
    token = token or os.environ.get("MEMSOAK_TOKEN") or secrets.token_hex(24)
    tracing.configured_frames = frames
    if server_kind == "gunicorn" or workers != 1:
        if interface == "asgi" or (interface == "auto" and probe_interface(spec, app_dir) == "asgi"):
            from memsoak.prefork import exec_gunicorn

            # No gevent server for ASGI: gunicorn's arbiter with uvicorn's worker class.
            return exec_gunicorn(
                spec, app_dir=app_dir, bind=bind, token=token, print_token=generated, frames=frames,
                allow=allow, workers=workers, worker_class=ASGI_WORKER_CLASS,
            )  # fmt: skip
    if server_kind == "gunicorn":
        from memsoak.prefork import exec_gunicorn

        return exec_gunicorn(
            spec, app_dir=app_dir, bind=bind, token=token, print_token=generated, frames=frames,
            allow=allow, workers=workers, worker_class=worker_class,
        )  # fmt: skip
    if workers != 1:
        from memsoak.prefork import serve_forked

        return serve_forked(
            spec, app_dir=app_dir, host=host, port=port, token=token, print_token=generated,
            frames=frames, trace=trace, allow=allow, workers=workers,
        )  # fmt: skip

    def exec_asgi() -> int:
        # Imported only for an ASGI app: asyncio is no WSGI run's cost.
        from memsoak.asgi_serve import AsgiTarget, exec_asgi

        assert token is not None
        return exec_asgi(
            AsgiTarget(spec, app_dir, bind, token, generated, frames, trace, tuple(allow), quick_exit)
        )

    if interface == "asgi":
        return exec_asgi()
    if trace:
        # Before the app is imported, so import-time allocations carry full tracebacks too.
        tracemalloc.start(frames)
    loaded = load_app(spec, app_dir)
    if interface == "auto" and is_asgi(loaded):
        # Imported twice, here and in uvicorn's fresh interpreter: a WSGI app, the common case,
        # is imported once, with gevent's patches in place before it.
        return exec_asgi()
    app = Agent(loaded, token=token, allow=allow)
    sock = listen(host, port)
    server = WSGIServer(sock, app, log=None, error_log=sys.stderr)
    server.start()
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    ready: dict[str, Any] = {"url": f"http://{shown_host}:{bound_port}", "pid": os.getpid()}
    if generated:
        ready["token"] = token
    # Before the ready line: whoever reads it may stop the target at once, and a SIGTERM before
    # the handler would kill it without its exit handlers.
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop)
    print(json.dumps(ready), flush=True)
    server.serve_forever()
    if quick_exit:
        # The interpreter's exit collects garbage several times over the whole heap (0.2 s for
        # the seed after a thousand requests, with `memsoak run` waiting on it). Frozen objects
        # are left out of those collections: objects in reference cycles are then not finalized
        # (a buffered file in one is not flushed); the rest are freed, atexit handlers run.
        gc.freeze()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsoak serve", description=__doc__.splitlines()[0])
    parser.add_argument("app", metavar="MODULE:ATTR")
    parser.add_argument("--app-dir", help="put DIR first on the import path")
    parser.add_argument("--bind", default="127.0.0.1:0", help="HOST:PORT (default a free loopback port)")
    parser.add_argument(
        "--token", help="agent token (default: env MEMSOAK_TOKEN, else a new one, printed once)"
    )
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="traceback depth to trace")
    parser.add_argument("--server", choices=("gevent", "gunicorn"), default="gevent", help="the WSGI server")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class: sync, gthread, gevent")
    parser.add_argument(
        "--interface", choices=INTERFACES, default="auto", help="ASGI or WSGI (default: told from the app)"
    )
    parser.add_argument("--no-trace", dest="trace", action="store_false", help="start with tracemalloc off")
    parser.add_argument(
        "--quick-exit",
        action="store_true",
        help="skip the interpreter's garbage collections at exit (memsoak run starts its targets so)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        metavar="CIDR",
        help="client networks allowed to use the agent (default: loopback)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return serve(
            args.app,
            app_dir=args.app_dir,
            bind=args.bind,
            token=args.token,
            frames=args.frames,
            trace=args.trace,
            allow=tuple(args.allow) if args.allow else LOOPBACK,
            server_kind=args.server,
            workers=args.workers,
            worker_class=args.worker_class,
            quick_exit=args.quick_exit,
            interface=args.interface,
        )
    except MemsoakError as exc:
        print(f"memsoak serve: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
