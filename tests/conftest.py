"""Shared fixtures: real targets on free loopback ports, real memsoak/locust processes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memsoak.target import TargetProcess

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_tracemalloc_leftovers() -> Iterator[None]:
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def default_sigint() -> None:
    """preexec_fn for a process a test will Ctrl-C: a test run started in the background
    (`cmd &` in a non-interactive shell) inherits SIGINT ignored, and so would memsoak."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def start_target(tmp_path: Path, token: str) -> Iterator[Callable[..., TargetProcess]]:
    """start_target("pkg.module:app", app_dir=..., frames=...) -> a served target, stopped after."""
    started: list[TargetProcess] = []

    def start(app: str, **kwargs: object) -> TargetProcess:
        log = tmp_path / f"target-{len(started)}.log"
        target = TargetProcess.start(app, token=token, log_path=log, **kwargs)  # type: ignore[arg-type]
        started.append(target)
        return target

    yield start
    for target in started:
        target.stop()


def run_process(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900):
    """Run a command to completion (bounded), returning CompletedProcess with text output."""
    return subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def memsoak(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """memsoak("run", "--requests", "500", ...) runs the real CLI in tmp_path."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 900):
        return run_process([sys.executable, "-m", "memsoak", *args], tmp_path, env, timeout)

    return run
