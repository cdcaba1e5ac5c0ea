"""`memsoak run`: start (or find) the target, drive Locust with the plugin, hand back its exit code."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from memsoak.agent_client import AgentClient, AgentError
from memsoak.errors import MemsoakError, TargetError
from memsoak.rundir import RunDir, render_run
from memsoak.target import TargetProcess, last_lines

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_APP = "targets.seed_leak.app:app"
DEFAULT_LOCUSTFILE = REPO_ROOT / "locustfiles" / "seed.py"
KNOWN_EXIT_CODES = (0, 1, 2, 3)
EXIT_INTERRUPTED = 130
STDERR_TAIL_LINES = 10
# After the target dies, Locust gets this long to notice and write its partial report before
# it is told to stop (SIGTERM: Locust still runs test_stop and writes what it has).
DEAD_TARGET_GRACE_S = 30.0


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
    agent_timeout_s: float = 120.0


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
        "--memsoak-agent-timeout", str(options.agent_timeout_s),
    ]  # fmt: skip
    if options.fail_on_leak:
        command.append("--memsoak-fail-on-leak")
    return command


def _drive_locust(
    options: RunOptions, url: str, token: str, target: TargetProcess | None
) -> tuple[int, bool]:
    """Locust's exit code, and whether the run was interrupted (Ctrl-C)."""
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
        if target is not None:
            target.watch(on_death=lambda: _stop_later(process, DEAD_TARGET_GRACE_S))
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                if line.startswith("memsoak"):
                    print(line, end="", flush=True)
            return process.wait(), False
        except KeyboardInterrupt:
            # Locust got the same Ctrl-C from the terminal (same process group; the target has a
            # session of its own): let it take a final snapshot and write its reports.
            for line in process.stdout:
                log.write(line)
                if line.startswith("memsoak"):
                    print(line, end="", flush=True)
            return process.wait(), True


def _stop_later(process: subprocess.Popen[str], grace_s: float) -> None:
    def stop() -> None:
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)

    threading.Thread(target=stop, name="memsoak-locust-stop", daemon=True).start()


def _record_target_death(options: RunOptions, target: TargetProcess) -> str:
    """Add what only the conductor knows (how and when the target died, its last stderr lines) to
    the run, render the reports again, and return a one-line account."""
    died_at = target.died_at or time.time()
    when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(died_at))
    how = target.exit_description()
    tail = last_lines(target.log_path, STDERR_TAIL_LINES)
    stamp = time.strftime("%H:%M:%S", time.localtime(died_at))
    events = [f"{stamp} the target process died at {when}: {how}"]
    events += [f"{stamp} target stderr: {line}" for line in tail]
    run_dir = RunDir(options.out)
    try:
        run_dir.add_events(events, "failed")
        render_run(options.out)
    except MemsoakError as exc:
        print(f"memsoak: could not update the report with the target's death: {exc}", flush=True)
    last = f"; its last stderr line: {tail[-1]}" if tail else ""
    return f"the target died during the run at {when} ({how}){last}; partial reports in {options.out}"


def _failure_event(out: Path) -> str:
    """The plugin's account of how the target failed, from the saved run."""
    try:
        events = RunDir(out).load()[0].events
    except MemsoakError:
        events = []
    failures = [e for e in events if "target failed at" in e]
    if not failures:
        return "the target failed"
    return failures[0].split(" ", 1)[1]  # without the HH:MM:SS prefix: it says the time itself


def run(options: RunOptions) -> int:
    if not options.locustfile.is_file():
        raise MemsoakError(f"no locustfile at {options.locustfile}")
    RunDir(options.out).prepare()  # an unwritable --out fails here, before any load
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
    print(f"memsoak: target {url}; {options.requests:,} measured requests after {options.warmup:,} "
          f"warm-up, {options.users} users; output in {options.out}", flush=True)  # fmt: skip
    started = time.time()
    try:
        code, interrupted = _drive_locust(options, url, token, target)
        if target is not None and not target.alive():
            raise TargetError(_record_target_death(options, target))
    finally:
        if target is not None:
            target.stop()
    if interrupted:
        print(f"memsoak: interrupted: reports of what was gathered are in {options.out}", flush=True)
        return EXIT_INTERRUPTED if code in (0, 1) else code
    report = options.out / "report.json"
    if code in (0, 1) and not (report.exists() and report.stat().st_mtime >= started - 1):
        # Locust itself failed (a broken locustfile, say): its exit 1 must not read as "leak".
        tail = " | ".join(last_lines(options.out / "locust.log", 2))
        raise MemsoakError(f"Locust ended (exit {code}) without writing a report: {tail}")
    if code == TargetError.exit_code:
        raise TargetError(f"{_failure_event(options.out)}; partial reports in {options.out}")
    if code not in KNOWN_EXIT_CODES:
        tail = " | ".join(last_lines(options.out / "locust.log", 2))
        raise TargetError(f"Locust exited with code {code}: {tail}")
    return code
