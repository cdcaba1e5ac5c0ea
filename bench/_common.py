"""Shared by the bench scripts: start a server, read its ready line, drive wrk, take medians.

Every figure the benches print is a ratio between configurations measured side by side, in
alternating rounds within one run: on a shared machine absolute numbers drift, ratios travel.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TOKEN = os.environ.get("MEMSOAK_TOKEN") or secrets.token_hex(16)


class Server:
    """A server process started by a bench, stopped by its own pid."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MEMSOAK_TOKEN": TOKEN, **(env or {})},
        )
        self.url = self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> str:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buffer = b""
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.5):
                if self.process.poll() is not None:
                    break
                continue
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.split(b"\n"):
                if line.startswith(b"{"):
                    try:
                        url = json.loads(line)["url"]
                    except (ValueError, KeyError):
                        continue
                    selector.close()
                    return str(url)
        self.stop()
        raise RuntimeError(f"server did not start: {' '.join(self.command)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve_command(app: str, *args: str) -> list[str]:
    return [PYTHON, "-m", "memsoak.serve", app, "--bind", "127.0.0.1:0", *args]


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"{tool} is missing: apt-get install {package}")
    return path


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")


def wrk(url: str, seconds: float = 5, connections: int = 10, threads: int = 1) -> float:
    """wrk's req/s against url (keep-alive, `connections` at once)."""
    output = subprocess.run(
        [need("wrk", "wrk"), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", url + "/"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    match = _WRK_RPS.search(output)
    if not match:
        raise RuntimeError(f"no req/s in wrk output: {output}")
    return float(match.group(1))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def machine_note() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} at the end of the run "
        "(a shared machine: ratios, not absolutes)"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
