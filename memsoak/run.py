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
from memsoak.history import History
from memsoak.rundir import RunDir
from memsoak.target import TargetProcess, last_lines

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_APP = "targets.seed_leak.app:app"
DEFAULT_LOCUSTFILE = REPO_ROOT / "locustfiles" / "seed.py"
KNOWN_EXIT_CODES = (0, 1, 2, 3)
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C; the reports are written


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
    max_time_s: int | None  # hard cap on the load; None: one hour, or the soak's duration plus slack
    duration_s: float | None = None  # a time-bound soak instead of `requests`
    checkpoint_every_s: float | None = None
    history: Path | None = None
    scenario: str = ""
    revision: str = ""
    fail_on_regression: bool = False

    @property
    def target_name(self) -> str:
        return self.host or self.app or DEFAULT_APP

    @property
    def hard_cap_s(self) -> int:
        if self.max_time_s is not None:
            return self.max_time_s
        if self.duration_s is not None:
            # Warm-up and the snapshots' pauses come on top of the measured duration.
            return int(self.duration_s + max(600.0, self.duration_s / 10))
        return 3600


def detect_revision(directory: str | Path) -> str:
    """The git commit checked out in `directory` ("" when it is not a git work tree), with
    "-dirty" when tracked files have local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if head and dirty else head  # fmt: skip


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
        "-t", f"{options.hard_cap_s}s",
        # Failed requests are counted in the report; exit codes are memsoak's (DESIGN.md).
        "--exit-code-on-error", "0",
        "--memsoak-warmup", str(options.warmup),
        "--memsoak-checkpoints", str(options.checkpoints),
        "--memsoak-out", str(options.out),
        "--memsoak-target", options.target_name,
    ]  # fmt: skip
    if options.duration_s is not None:
        command += ["--memsoak-duration", f"{options.duration_s:g}s"]
        if options.checkpoint_every_s is not None:
            command += ["--memsoak-checkpoint-every", f"{options.checkpoint_every_s:g}s"]
    else:
        command += ["--memsoak-requests", str(options.requests)]
    if options.history is not None:
        command += ["--memsoak-history", str(options.history.resolve())]
    command += ["--memsoak-scenario", options.scenario or f"{options.locustfile.stem}@{options.target_name}"]
    if options.revision:
        command += ["--memsoak-revision", options.revision]
    if options.fail_on_leak:
        command.append("--memsoak-fail-on-leak")
    if options.fail_on_regression:
        command.append("--memsoak-fail-on-regression")
    return command


def _drive_locust(options: RunOptions, url: str, token: str) -> tuple[int, bool]:
    """Locust's exit code, and whether Ctrl-C ended the run."""
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
            return process.wait(), False
        except KeyboardInterrupt:
            # Locust got the same Ctrl-C from the terminal (same process group): let it take what
            # it can and write its reports, showing its last lines.
            for line in process.stdout:
                log.write(line)
                if line.startswith("memsoak"):
                    print(line, end="", flush=True)
            return process.wait(), True


def run(options: RunOptions) -> int:
    if not options.locustfile.is_file():
        raise MemsoakError(f"no locustfile at {options.locustfile}")
    RunDir(options.out).prepare()
    if options.history is not None:
        History(options.history).check()
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
        )
        url = target.url
    plan = (
        f"a {options.duration_s:g} s soak"
        if options.duration_s is not None
        else f"{options.requests:,} measured requests"
    )
    print(f"memsoak: target {url}; {plan} after {options.warmup:,} "
          f"warm-up, {options.users} users; output in {options.out}", flush=True)  # fmt: skip
    try:
        code, interrupted = _drive_locust(options, url, token)
        if interrupted:
            print("memsoak: interrupted; the reports cover the run up to its last snapshot", flush=True)
            return EXIT_INTERRUPTED if code in (0, 1) else code
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
