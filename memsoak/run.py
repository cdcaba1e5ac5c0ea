"""`memsoak run`: start (or find) the target, drive Locust with the plugin, hand back its exit code."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from memsoak import lifeline
from memsoak.agent_client import AgentClient
from memsoak.errors import MemsoakError, TargetError
from memsoak.history import History
from memsoak.rundir import RunDir, render_run
from memsoak.target import START_TIMEOUT_S, TargetProcess, last_lines

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_APP = "targets.seed_leak.app:app"
DEFAULT_LOCUSTFILE = REPO_ROOT / "locustfiles" / "seed.py"
# Named before every locustfile: one that does not import memsoak gets its options and plugin.
AUTO_LOCUSTFILE = Path(__file__).resolve().parent / "locust" / "auto.py"
KNOWN_EXIT_CODES = (0, 1, 2, 3)
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C; the reports are written
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
    max_time_s: int | None  # hard cap on the load; None: one hour, or the soak's duration plus slack
    formats: tuple[str, ...] = ()  # report writers to run; empty: all
    agent_timeout_s: float = 120.0
    workers: int = 0  # Locust worker processes under a master; 0: one plain Locust process
    server: str = "gevent"  # what serves a started target: gevent or gunicorn
    server_workers: int = 1  # the target's worker processes
    interface: str = "auto"  # the started app's: asgi, wsgi, or told from the app
    duration_s: float | None = None  # a time-bound soak instead of `requests`
    checkpoint_every_s: float | None = None
    history: Path | None = None
    scenario: str = ""
    revision: str = ""
    fail_on_regression: bool = False
    until_confident: bool = False
    watch: bool = False
    native_window: int | None = None  # None: the plugin's default
    verdict_args: tuple[tuple[str, str], ...] = ()  # (Locust option without --memsoak-, value)

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


def _git(directory: str | Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def detect_revision(directory: str | Path) -> str:
    """The git commit checked out in `directory` ("" when it is not a git work tree), with
    "-dirty" when tracked files have local changes."""
    try:
        head = _git(directory, "rev-parse", "--short=12", "HEAD")
        dirty = _git(directory, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}-dirty" if head and dirty else head  # fmt: skip


def _check_agent(url: str, token: str) -> None:
    """A wrong token is exit 2 (AgentRefused); no agent answering there is exit 3, as for a
    started target that does not come up (AgentError is a TargetError)."""
    AgentClient(url, token, timeout=10).status()


def locustfiles(options: RunOptions) -> str:
    return f"{AUTO_LOCUSTFILE},{options.locustfile}"


def locust_command(options: RunOptions, url: str) -> list[str]:
    command = [
        sys.executable, "-m", "locust",
        "-f", locustfiles(options),
        "--headless", "--only-summary",
        "-u", str(options.users), "-r", str(options.spawn_rate),
        "--host", url,
        "-t", f"{options.hard_cap_s}s",
        # Failed requests are counted in the report; exit codes are memsoak's (DESIGN.md).
        "--exit-code-on-error", "0",
        "--memsoak-warmup", str(options.warmup),
        "--memsoak-checkpoints", str(options.checkpoints),
        "--memsoak-out", str(options.out),
        "--memsoak-agent-timeout", str(options.agent_timeout_s),
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
    if options.formats:
        command += ["--memsoak-format", ",".join(options.formats)]
    if options.until_confident:
        command.append("--memsoak-until-confident")
    if options.watch:
        command.append("--memsoak-watch")
    if options.frames:
        # A depth asked for is the depth the series is traced at, not one frame and windows.
        command += ["--memsoak-frames", str(options.frames)]
    if options.native_window is not None:
        command += ["--memsoak-native-window", str(options.native_window)]
    for option, value in options.verdict_args:
        command += [f"--memsoak-{option}", value]
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
                    [sys.executable, "-m", "locust", "-f", locustfiles(options), "--worker",
                     "--master-host", "127.0.0.1", "--master-port", str(master_port)],
                    stdout=log, stderr=subprocess.STDOUT, env=env,
                    preexec_fn=lifeline.preexec(signal.SIGTERM),
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


def _drive_locust(
    options: RunOptions, url: str, token: str, target: TargetProcess | None
) -> tuple[int, bool]:
    """Locust's exit code, and whether the run was interrupted (Ctrl-C)."""
    from memsoak.progress import ENV as PROGRESS_ENV

    # Whatever ends this process, each Locust process ends with it (lifeline.py): the kernel
    # sends it SIGTERM, and it watches for its parent to go (memsoak/locust/conductor.py).
    conducted = {lifeline.ENV_PID: str(os.getpid())}
    env = {
        **os.environ, **conducted, "LOCUST_MEMSOAK_AGENT_TOKEN": token, PROGRESS_ENV: "1",
        lifeline.ENV_LOG: str(options.out / "locust.log"),
    }  # fmt: skip
    command = locust_command(options, url)
    if target is not None:
        command += ["--memsoak-agent-wait", f"{START_TIMEOUT_S:g}"]
        command += ["--memsoak-target-log", str(target.log_path)]
    workers: list[subprocess.Popen[bytes]] = []
    if options.workers:
        port = free_port()
        command += ["--master", "--expect-workers", str(options.workers), "--expect-workers-max-wait", "60",
                    "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]  # fmt: skip
        # Workers need no token: only the master talks to the agent.
        workers = _start_locust_workers(options, port, {**os.environ, **conducted})
    try:
        return _run_locust_master(command, env, options.out / "locust.log", target)
    finally:
        _stop_locust_workers(workers)


def _run_locust_master(
    command: list[str], env: dict[str, str], log_path: Path, target: TargetProcess | None
) -> tuple[int, bool]:
    from memsoak.progress import SUMMARY, TerminalView

    # Line-buffered: what Locust said is on disk even if this process is killed the next moment.
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:
        # Started before the terminal view is made: Locust's imports are the longest step of a
        # run's start (the target's run alongside), and rich's would hold them up.
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            bufsize=1,
            preexec_fn=lifeline.preexec(signal.SIGTERM),
        )
        with TerminalView() as view:
            if target is not None:
                try:
                    target.wait_ready()
                except MemsoakError:
                    process.kill()
                    process.wait()
                    raise
                target.watch(on_death=lambda: _stop_later(process, DEAD_TARGET_GRACE_S))
            assert process.stdout is not None
            try:
                for line in process.stdout:
                    log.write(line)
                    view.feed(line)
                    if target is not None and line.startswith(SUMMARY):
                        # The reports are written and Locust is done with the target: its teardown
                        # overlaps Locust's own.
                        threading.Thread(target=target.stop, name="memsoak-target-stop", daemon=True).start()
                return process.wait(), False
            except KeyboardInterrupt:
                # Locust got the same Ctrl-C from the terminal (same process group; the target has a
                # session of its own): let it take a final snapshot and write its reports.
                for line in process.stdout:
                    log.write(line)
                    view.feed(line)
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


def locust_error(log_path: Path) -> str:
    """Locust's own account of why it stopped: the last error line of its log (argparse's
    `locust: error: ...`, memsoak's plugin's, or a traceback's last line), else its last line."""
    lines = [line.strip() for line in last_lines(log_path, 60) if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    line = (errors or lines or ["(nothing in locust.log)"])[-1]
    return line.removeprefix("memsoak: error: ")


def _failure_event(out: Path) -> str:
    """The plugin's account of how the target (or the load) failed, from the saved run."""
    try:
        events = RunDir(out).load()[0].events
    except MemsoakError:
        events = []
    failures = [
        e for e in events if "target failed at" in e or "load failed at" in e or "requests failed at" in e
    ]
    if not failures:
        return "the target failed"
    return failures[0].split(" ", 1)[1]  # without the HH:MM:SS prefix: it says the time itself


def run(options: RunOptions) -> int:
    if not options.locustfile.is_file():
        raise MemsoakError(f"no locustfile at {options.locustfile}")
    RunDir(options.out).prepare()  # an unwritable --out fails here, before any load
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
        token = options.agent_token or secrets.token_hex(24)
        multi_worker = options.server != "gevent" or options.server_workers != 1
        # Launched, not awaited: Locust starts meanwhile (both spend seconds importing) and its
        # plugin waits for the agent to answer (--memsoak-agent-wait) before any load.
        target = TargetProcess.launch(
            options.app or DEFAULT_APP,
            port=free_port(),
            token=token,
            log_path=options.out / "target.log",
            app_dir=options.app_dir,
            frames=options.frames,
            extra_args=(
                ("--server", options.server, "--workers", str(options.server_workers))
                if multi_worker
                # Warm-up runs untraced, at full speed; the plugin turns tracing on at the
                # baseline. Multi-worker targets have no such switch: they trace from the start.
                else ("--no-trace", "--quick-exit")
            )
            + ("--interface", options.interface),
        )
        if multi_worker:
            # The first worker's agent answers before the others have registered for the
            # fan-out: the baseline must see every worker, so Locust waits for the ready line.
            target.wait_ready()
        url = target.url
    plan = (
        f"a {options.duration_s:g} s soak"
        if options.duration_s is not None
        else f"{options.requests:,} measured requests"
    )
    print(f"memsoak: target {url}; {plan} after {options.warmup:,} "
          f"warm-up, {options.users} users; output in {options.out}", flush=True)  # fmt: skip
    started = time.time()
    try:
        code, interrupted = _drive_locust(options, url, token, target)
        if target is not None and not target.stopped and not target.alive():
            raise TargetError(_record_target_death(options, target))
    finally:
        if target is not None:
            target.stop()
    if interrupted:
        print(f"memsoak: interrupted: reports of what was gathered are in {options.out}", flush=True)
        return EXIT_INTERRUPTED if code in (0, 1) else code
    report = options.out / "report.json"
    if code in (0, 1, 2) and not (report.exists() and report.stat().st_mtime >= started - 1):
        # Locust itself failed (a broken locustfile, an option it does not know): its exit 1
        # must not read as "leak", and its reason must not stay in locust.log alone.
        raise MemsoakError(f"Locust did not run (exit {code}): {locust_error(options.out / 'locust.log')}")
    if code == TargetError.exit_code:
        raise TargetError(f"{_failure_event(options.out)}; partial reports in {options.out}")
    if code not in KNOWN_EXIT_CODES:
        tail = " | ".join(last_lines(options.out / "locust.log", 2))
        raise TargetError(f"Locust exited with code {code}: {tail}")
    return code
