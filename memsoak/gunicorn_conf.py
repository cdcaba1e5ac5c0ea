"""gunicorn configuration for a target served by gunicorn with N workers, each with the agent.

    MEMSOAK_APP=pkg.module:app MEMSOAK_TOKEN=... \\
        gunicorn -c python:memsoak.gunicorn_conf 'memsoak.gunicorn_conf:make_app()'

`memsoak serve APP --server gunicorn --workers N` (and `memsoak run --server gunicorn
--server-workers N`) set this up. Settings come from the environment: MEMSOAK_APP, MEMSOAK_APP_DIR,
MEMSOAK_BIND (default 127.0.0.1:0), MEMSOAK_SERVER_WORKERS, MEMSOAK_WORKER_CLASS (default sync),
MEMSOAK_FRAMES, MEMSOAK_AGENT_DIR (the workers' control sockets; made here when unset). An ASGI
app (with uvicorn's worker class) gets the ASGI agent, its door the same fan-out agent.

The app is loaded in each worker after the fork (no preload), with tracemalloc already started
there, so import-time allocations carry tracebacks and no worker shares a traced heap with the
arbiter. Once every worker's agent has registered its control socket, one of them prints the
same JSON ready line as `memsoak.serve`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import tracemalloc
from typing import Any

from memsoak import lifeline

_env = os.environ

bind = [_env.get("MEMSOAK_BIND", "127.0.0.1:0")]
workers = int(_env.get("MEMSOAK_SERVER_WORKERS", "1"))
worker_class = _env.get("MEMSOAK_WORKER_CLASS", "sync")
preload_app = False
control_socket_disable = True  # gunicorn 24+: one fixed path per user, shared by every instance
accesslog = None
# A snapshot blocks a sync worker for seconds; the arbiter must not take that for a hang.
timeout = 600
graceful_timeout = 10

if not _env.get("MEMSOAK_AGENT_DIR"):
    _env["MEMSOAK_AGENT_DIR"] = tempfile.mkdtemp(prefix="memsoak-agent-")
    _env["MEMSOAK_AGENT_DIR_OWNED"] = "1"
os.chmod(_env["MEMSOAK_AGENT_DIR"], 0o700)


def when_ready(server: Any) -> None:
    host, port = server.LISTENERS[0].sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # Inherited by the workers, which print the ready line once they are all registered.
    _env["MEMSOAK_URL"] = f"http://{shown}:{port}"
    _env["MEMSOAK_ARBITER_PID"] = str(os.getpid())


def post_fork(server: Any, worker: Any) -> None:
    # The arbiter stops its workers as it stops; one that dies without doing so (killed
    # outright) leaves nobody to: each worker then ends at once, its forked children with it.
    lifeline.end_with_parent(signal.SIGKILL, server.pid)
    tracemalloc.start(int(_env.get("MEMSOAK_FRAMES", "10")))


def post_worker_init(worker: Any) -> None:
    agent = worker.wsgi
    agent.start_control()
    run_dir = agent.run_dir
    if len(list(run_dir.glob("*.sock"))) < workers:
        return
    try:  # exactly one worker prints, even if several see the full count at once
        fd = os.open(run_dir / "ready", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    ready: dict[str, Any] = {
        "url": _env["MEMSOAK_URL"],
        "pid": int(_env["MEMSOAK_ARBITER_PID"]),
        "workers": workers,
    }
    if _env.get("MEMSOAK_PRINT_TOKEN"):
        ready["token"] = _env["MEMSOAK_TOKEN"]
    print(json.dumps(ready), flush=True)


def worker_exit(server: Any, worker: Any) -> None:
    stop = getattr(worker.wsgi, "stop_control", None)
    if stop is not None:
        stop()


def on_exit(server: Any) -> None:
    if _env.get("MEMSOAK_AGENT_DIR_OWNED"):
        with contextlib.suppress(OSError):
            shutil.rmtree(_env["MEMSOAK_AGENT_DIR"])


def make_app() -> Any:
    """The user's app (MEMSOAK_APP) under the fan-out agent; called in each worker."""
    # Not memsoak.serve's loader: importing that module patches the stdlib with gevent.
    from gunicorn.util import import_app  # type: ignore[import-untyped]

    from memsoak.agent.fanout import FanoutAgent
    from memsoak.agent.middleware import LOOPBACK
    from memsoak.prefork import ASGI_WORKER_CLASS

    allow = tuple(a for a in _env.get("MEMSOAK_ALLOW", "").split(",") if a) or LOOPBACK
    app_dir = _env.get("MEMSOAK_APP_DIR")
    sys.path.insert(0, os.path.abspath(app_dir) if app_dir else os.getcwd())
    app = import_app(_env["MEMSOAK_APP"])
    if worker_class == ASGI_WORKER_CLASS:
        from memsoak.agent.asgi import AsgiAgent, no_app

        door = FanoutAgent(no_app, _env["MEMSOAK_TOKEN"], allow=allow, run_dir=_env["MEMSOAK_AGENT_DIR"])
        return AsgiAgent(app, door=door)
    return FanoutAgent(app, _env["MEMSOAK_TOKEN"], allow=allow, run_dir=_env["MEMSOAK_AGENT_DIR"])
