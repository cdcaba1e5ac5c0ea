"""`memsoak run`: start (or find) the target, drive Locust with the plugin, hand back its exit code."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from memsoak.agent_client import AgentClient, AgentError
from memsoak.errors import MemsoakError, TargetError
from memsoak.rundir import RunDir
from memsoak.target import TargetProcess, last_lines

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_APP = "targets.seed_leak.app:app"
DEFAULT_LOCUSTFILE = REPO_ROOT / "locustfiles" / "seed.py"
KNOWN_EXIT_CODES = (0, 1, 2, 3)


@dataclass(frozen=True, slots=True)
class RunOptions:
    app: str | None
    app_dir: str | None
    host: str | None
    agent_token: str | None
    locustfile: Path
    requests: int
    warmup: int
    checkpoints: int
    users: int
    spawn_rate: float
    out: Path
    fail_on_leak: bool
    frames: int | None
    max_time_s: int
    workers: int = 0  # Locust worker processes under a master; 0: one plain Locust process
    server: str = "gevent"  # what serves a started target: gevent or gunicorn
    server_workers: int = 1  # the target's worker processes


def _check_agent(url: str, token: str) -> None:
    try:
        AgentClient(url, token, timeout=10).status()
    except AgentError as exc:
        raise MemsoakError(str(exc)) from None


def locust_command(options: RunOptions, url: str) -> list[str]:
    command = [
        sys.executable, "-m", "locust",
        "-f", str(options.locustfile),
        "--headless", "--only-summary",
        "-u", str(options.users), "-r", str(options.spawn_rate),
        "--host", url,
        "-t", f"{options.max_time_s}s",
        # Failed requests are counted in the report; exit codes are memsoak's (DESIGN.md).
        "--exit-code-on-error", "0",
        "--memsoak-requests", str(options.requests),
        "--memsoak-warmup", str(options.warmup),
        "--memsoak-checkpoints", str(options.checkpoints),
        "--memsoak-out", str(options.out),
    ]  # fmt: skip
    if options.fail_on_leak:
        command.append("--memsoak-fail-on-leak")
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_locust_workers(
    options: RunOptions, master_port: int, env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for index in range(options.workers):
        with open(options.out / f"locust-worker-{index}.log", "wb") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "locust", "-f", str(options.locustfile), "--worker",
                     "--master-host", "127.0.0.1", "--master-port", str(master_port)],
                    stdout=log, stderr=subprocess.STDOUT, env=env,
                )
            )  # fmt: skip
    return workers


def _stop_locust_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    # The master tells its workers to quit; only stragglers are signalled.
    deadline = time.monotonic() + 15
    for worker in workers:
        try:
            worker.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.terminate()
            try:
                worker.wait(5)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _drive_locust(options: RunOptions, url: str, token: str) -> int:
    env = {**os.environ, "LOCUST_MEMSOAK_AGENT_TOKEN": token}
    log_path = options.out / "locust.log"
    command = locust_command(options, url)
    workers: list[subprocess.Popen[bytes]] = []
    if options.workers:
        port = free_port()
        command += ["--master", "--expect-workers", str(options.workers), "--expect-workers-max-wait", "60",
                    "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]  # fmt: skip
        # Workers need no token: only the master talks to the agent.
        workers = _start_locust_workers(options, port, {**os.environ})
    try:
        return _run_locust_master(command, env, log_path)
    finally:
        _stop_locust_workers(workers)


def _run_locust_master(command: list[str], env: dict[str, str], log_path: Path) -> int:
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            bufsize=1,
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                if line.startswith("memsoak"):
                    print(line, end="", flush=True)
            return process.wait()
        except KeyboardInterrupt:
            # Locust got the same Ctrl-C from the terminal: let it write its partial report.
            return process.wait()


def run(options: RunOptions) -> int:
    if not options.locustfile.is_file():
        raise MemsoakError(f"no locustfile at {options.locustfile}")
    RunDir(options.out).prepare()
    target: TargetProcess | None = None
    if options.host:
        token = options.agent_token or os.environ.get("MEMSOAK_TOKEN", "")
        if not token:
            raise MemsoakError("--host needs the agent's token: --agent-token or MEMSOAK_TOKEN")
        url = options.host
        _check_agent(url, token)
    else:
        token = options.agent_token or secrets.token_urlsafe(24)
        target = TargetProcess.start(
            options.app or DEFAULT_APP,
            token=token,
            log_path=options.out / "target.log",
            app_dir=options.app_dir,
            frames=options.frames,
            extra_args=("--server", options.server, "--workers", str(options.server_workers))
            if options.server != "gevent" or options.server_workers != 1
            else (),
        )
        url = target.url
    print(f"memsoak: target {url}; {options.requests:,} measured requests after {options.warmup:,} "
          f"warm-up, {options.users} users; output in {options.out}", flush=True)  # fmt: skip
    try:
        code = _drive_locust(options, url, token)
        if target is not None and not target.alive():
            tail = " | ".join(last_lines(target.log_path, 3))
            raise TargetError(f"the target died during the run (exit {target.process.returncode}): {tail}")
    finally:
        if target is not None:
            target.stop()
    if code not in KNOWN_EXIT_CODES:
        tail = " | ".join(last_lines(options.out / "locust.log", 2))
        raise TargetError(f"Locust exited with code {code}: {tail}")
    return code
