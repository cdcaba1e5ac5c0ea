"""A target app started by memsoak: `python -m memsoak.serve` in a child process."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memsoak import lifeline
from memsoak.errors import MemsoakError, TargetError

START_TIMEOUT_S = 60.0
EXIT_BAD_APP = 2  # memsoak.serve's exit code for an app it cannot import or serve


class TargetProcess:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path
        self.died_at: float | None = None  # wall-clock time the watcher saw it gone
        self.ready = False  # its ready line was read
        self._stopping = False
        self._stopped_alive = False
        # `memsoak run` stops the target from a thread as the reports are in, and again on its
        # way out: the second waits here rather than polling Popen.wait's lock.
        self._stop_lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(cls, app: str, **launch_args: Any) -> TargetProcess:
        """Launch the target and wait until it serves."""
        target = cls.launch(app, **launch_args)
        target.wait_ready()
        return target

    @classmethod
    def launch(
        cls,
        app: str,
        *,
        token: str,
        log_path: Path,
        app_dir: str | None = None,
        frames: int | None = None,
        extra_args: tuple[str, ...] = (),
        port: int = 0,
    ) -> TargetProcess:
        """Start the target's process without waiting for it: `url` is known once `wait_ready`
        returns (or at once, with a fixed `port`)."""
        command = [sys.executable, "-m", "memsoak.serve", app, "--bind", f"127.0.0.1:{port}"]
        if app_dir:
            command += ["--app-dir", app_dir]
        if frames is not None:
            command += ["--frames", str(frames)]
        command += list(extra_args)
        env = {**os.environ, "MEMSOAK_TOKEN": token}  # not argv: argv is visible to `ps`
        log = open(log_path, "ab")  # the child keeps writing to it
        try:
            # Its own session: a Ctrl-C at the terminal reaches memsoak and Locust, which still
            # need the target for the final snapshot; memsoak stops it itself. It gets SIGTERM
            # when memsoak dies, even killed outright (SIGKILL, OOM): no server outlives the run
            # that started it.
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
                preexec_fn=lifeline.preexec(signal.SIGTERM),
            )
        finally:
            log.close()
        return cls(process, f"http://127.0.0.1:{port}" if port else "", log_path)

    def wait_ready(self) -> None:
        """Wait for the target's ready line; TargetError (or MemsoakError for an app that cannot
        be imported) when it dies or stays silent first."""
        if not self.ready:
            self.url = self._wait_ready(self.process, self.log_path)
            self.ready = True

    @staticmethod
    def _wait_ready(process: subprocess.Popen[bytes], log_path: Path) -> str:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            if not selector.select(timeout=0.2):
                if process.poll() is not None:
                    break
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
        selector.close()
        if line.endswith(b"\n"):
            try:
                return str(json.loads(line)["url"])
            except (ValueError, KeyError, TypeError):
                pass
        try:
            # Its stdout closed: the process is on its way out; let it finish saying why.
            code: int | None = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            process.kill()
            process.wait()
            raise TargetError(f"the target did not start within {START_TIMEOUT_S:.0f} s (log: {log_path})")
        last = last_lines(log_path, 1)
        reason = last[0] if last else f"exit code {code}"
        error = MemsoakError if code == EXIT_BAD_APP else TargetError
        raise error(f"the target did not start: {reason.removeprefix('memsoak serve: error: ')}")

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def stopped(self) -> bool:
        """`stop()` found it running and ended it: its exit was not a death."""
        return self._stopped_alive

    def watch(self, on_death: Callable[[], None] | None = None, interval_s: float = 0.2) -> None:
        """Note when the process dies (`died_at`), and call `on_death` once, from a thread."""

        def poll() -> None:
            while not self._stopping:
                if self.process.poll() is not None:
                    self.died_at = time.time()
                    if on_death is not None:
                        on_death()
                    return
                time.sleep(interval_s)

        threading.Thread(target=poll, name="memsoak-target-watch", daemon=True).start()

    def exit_description(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "an unknown signal"
            return f"killed by signal {-code} ({name})"
        return f"exited with code {code}"

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        with self._stop_lock:
            if self.process.poll() is None:
                self._stopped_alive = True
                self.process.send_signal(signal.SIGTERM)
                self.process.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) target can act on it
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()


def last_lines(path: Path, count: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return [line.rstrip("\n") for line in deque(file, maxlen=count)]
    except OSError:
        return []
