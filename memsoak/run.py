"""`memsoak run`: start (or find) the target, drive Locust with the plugin, hand back its exit code."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
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
    until_confident: bool = False
    watch: bool = False


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
    if options.until_confident:
        command.append("--memsoak-until-confident")
    if options.watch:
        command.append("--memsoak-watch")
    return command


def _drive_locust(options: RunOptions, url: str, token: str) -> int:
    env = {**os.environ, "LOCUST_MEMSOAK_AGENT_TOKEN": token}
    log_path = options.out / "locust.log"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            locust_command(options, url),
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
            # Warm-up runs untraced, at full speed; the plugin turns tracing on at the baseline.
            extra_args=("--no-trace",),
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
