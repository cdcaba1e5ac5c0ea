"""A target killed outright ends what it started: its workers (gunicorn's, or gevent's forked
N times), and a forked snapshot or retention child still at work. Their parent stops them as it
stops; killed, it cannot, and they end with it all the same (memsoak/lifeline.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from memsoak.agent import forked
from memsoak.target import TargetProcess
from tests.conftest import REPO
from tests.test_orphans import GONE_WITHIN_S, SLOW, alive, describe, kill_all, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


@pytest.mark.parametrize("server", ["gunicorn", "gevent"])
def test_target_workers_end_with_a_target_killed_outright(
    start_target: Callable[..., TargetProcess], server: str
) -> None:
    """A multi-worker target's parent stops its workers as it stops; killed outright, it cannot,
    and its workers end all the same."""
    target = start_target(SLOW, app_dir=str(REPO), extra_args=("--server", server, "--workers", "2"))
    workers = psutil.Process(target.pid).children()
    assert len(workers) == 2
    os.kill(target.pid, signal.SIGKILL)
    target.process.wait()
    try:
        wait_until(lambda: not any(map(alive, workers)), GONE_WITHIN_S, lambda: f"left: {describe(workers)}")
    finally:
        kill_all(workers)


HELD_CHILD = """
import os, sys, time, tracemalloc
from memsoak.agent import forked, retention, tracing

never_written, _ = os.pipe()

def held(*args, **kwargs):
    os.read(never_written, 1)  # the child waits here for ever

tracemalloc.start(1)
if sys.argv[1] == "snapshot":
    tracing.snapshot_document = held
    work = forked.ForkedSnapshot(0, 1 << 20)
else:
    retention.find_retention = held
    work = forked.ForkedRetention([], 1.0)
print("forked", flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not forked.available(), reason="forked snapshots are Linux only")
@pytest.mark.parametrize("kind", ["snapshot", "retention"])
def test_a_forked_child_ends_with_a_target_killed_outright(tmp_path: Path, kind: str) -> None:
    """The target ends its child once the answer is in (or the client gone); a target killed
    outright never gets there, and the child, still working, ends with it."""
    target = subprocess.Popen(
        [sys.executable, "-c", HELD_CHILD, kind],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert target.stdout is not None
    children: list[psutil.Process] = []
    try:
        assert target.stdout.readline() == "forked\n"
        children = psutil.Process(target.pid).children()
        assert len(children) == 1 and alive(children[0])
        target.kill()
        target.wait()
        wait_until(
            lambda: not alive(children[0]), GONE_WITHIN_S, lambda: f"the {kind} child outlived its target"
        )
    finally:
        kill_all(children)
        target.kill()
        target.wait()
        target.stdout.close()
