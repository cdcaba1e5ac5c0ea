"""Multi-worker targets: hand a WSGI app to gunicorn with N workers, each with the fan-out agent
(memsoak.agent.fanout, memsoak.gunicorn_conf)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from memsoak.errors import MemsoakError

WORKER_CLASSES = ("sync", "gthread", "gevent")


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
    if worker_class not in WORKER_CLASSES:
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
