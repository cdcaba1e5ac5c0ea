"""Multi-worker targets, each worker with the fan-out agent (memsoak.agent.fanout): gunicorn with
N workers (memsoak.gunicorn_conf), or gevent's WSGI server forked N times."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from memsoak import lifeline
from memsoak.errors import MemsoakError

READY_TIMEOUT_S = 120.0
EXIT_BAD_APP = 2
EXIT_WORKER_DIED = 3

WORKER_CLASSES = ("sync", "gthread", "gevent")
ASGI_WORKER_CLASS = "uvicorn.workers.UvicornWorker"


def exec_gunicorn(
    spec: str,
    *,
    app_dir: str | None,
    bind: str,
    token: str,
    print_token: bool,
    frames: int,
    allow: Sequence[str],
    workers: int,
    worker_class: str = "sync",
) -> int:
    """Replace this process with gunicorn's arbiter (so a signal to this pid reaches it)."""
    if worker_class not in (*WORKER_CLASSES, ASGI_WORKER_CLASS):
        raise MemsoakError(f"--worker-class must be one of {', '.join(WORKER_CLASSES)}, got {worker_class!r}")
    if not 1 <= workers <= 256:
        raise MemsoakError(f"--workers must be 1..256, got {workers}")
    env = {
        **os.environ,
        "MEMSOAK_APP": spec,
        "MEMSOAK_APP_DIR": os.path.abspath(app_dir) if app_dir else os.getcwd(),
        "MEMSOAK_BIND": bind,
        "MEMSOAK_TOKEN": token,
        "MEMSOAK_FRAMES": str(frames),
        "MEMSOAK_SERVER_WORKERS": str(workers),
        "MEMSOAK_WORKER_CLASS": worker_class,
        "MEMSOAK_ALLOW": ",".join(allow),
    }
    env.pop("MEMSOAK_AGENT_DIR", None)  # a fresh private one, made by the config
    if print_token:
        env["MEMSOAK_PRINT_TOKEN"] = "1"
    command = [
        sys.executable, "-m", "gunicorn",
        "-c", "python:memsoak.gunicorn_conf",
        "--error-logfile", "-",
        "memsoak.gunicorn_conf:make_app()",
    ]  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)
    return 0  # not reached


def serve_forked(
    spec: str,
    *,
    app_dir: str | None,
    host: str,
    port: int,
    token: str,
    print_token: bool,
    frames: int,
    trace: bool,
    allow: Sequence[str],
    workers: int,
) -> int:
    """gevent's WSGI server in `workers` processes forked after the socket is bound (they share
    it and the kernel spreads connections), each with the fan-out agent. Call with gevent's
    patches in place (memsoak.serve). The parent only watches: it prints the ready line once every
    worker has registered, stops them all on SIGTERM or SIGINT, and stops the rest if one dies (a
    target whose worker died is a failed target: exit 3)."""
    import gevent
    from gevent.event import Event

    from memsoak.hosting import listen

    if not 1 <= workers <= 256:
        raise MemsoakError(f"--workers must be 1..256, got {workers}")
    run_dir = tempfile.mkdtemp(prefix="memsoak-agent-")
    sock = listen(host, port)
    children: list[int] = []
    parent_pid = os.getpid()
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    # The parent stops its workers as it stops; killed outright it cannot.
                    lifeline.end_with_parent(signal.SIGKILL, parent_pid)
                    code = _serve_child(sock, spec, app_dir, token, frames, trace, allow, run_dir)
                finally:
                    os._exit(code)
            children.append(pid)
        stop = Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, stop.set)
        code = _watch(children, run_dir, workers, sock, token if print_token else None, stop)
    finally:
        _stop_children(children)
        shutil.rmtree(run_dir, ignore_errors=True)
    return code


def _serve_child(
    sock: socket.socket,
    spec: str,
    app_dir: str | None,
    token: str,
    frames: int,
    trace: bool,
    allow: Sequence[str],
    run_dir: str,
) -> int:
    import tracemalloc

    import gevent
    from gevent.pywsgi import WSGIServer

    from memsoak.agent.fanout import FanoutAgent
    from memsoak.hosting import load_app

    if trace:  # before the app is imported, as in the single-process server
        tracemalloc.start(frames)
    try:
        agent = FanoutAgent(load_app(spec, app_dir), token, allow=allow, run_dir=run_dir)
    except MemsoakError as exc:
        print(f"memsoak serve: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    agent.start_control()
    server = WSGIServer(sock, agent, log=None, error_log=sys.stderr)
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop)
    try:
        server.serve_forever()
    finally:
        agent.stop_control()
    return 0


def _watch(
    children: list[int], run_dir: str, workers: int, sock: socket.socket, token: str | None, stop: Any
) -> int:
    ready = False
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stop.wait(0.2):
        for pid in children:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                print(f"memsoak serve: error: worker {pid} exited (code {code})", file=sys.stderr, flush=True)
                children.remove(pid)
                return code if not ready and code == EXIT_BAD_APP else EXIT_WORKER_DIED
        if not ready:
            if len([n for n in os.listdir(run_dir) if n.endswith(".sock")]) >= workers:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                line: dict[str, Any] = {
                    "url": f"http://{shown}:{port}",
                    "pid": os.getpid(),
                    "workers": workers,
                }
                if token:
                    line["token"] = token
                print(json.dumps(line), flush=True)
                ready = True
            elif time.monotonic() > deadline:
                print("memsoak serve: error: the workers did not start in time", file=sys.stderr, flush=True)
                return EXIT_WORKER_DIED
    return 0


def _stop_children(children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for pid in children:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.1)
