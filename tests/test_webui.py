"""The Memory tab in Locust's web UI: real target, real `locust` with its web UI, real browser."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser import browser_page
from tests.conftest import REPO

MEASURED = 600
WARMUP = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"locust exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"locust's web UI did not answer at {url}: {log.read_text()[-2000:]}")


@pytest.fixture
def locust_web(start_target, token: str, tmp_path: Path) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    target = start_target("targets.faults.held_leak:app")
    port = _free_port()
    log = tmp_path / "locust.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(REPO / "locustfiles" / "seed.py"),
                "--host",
                target.url,
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(port),
                "-u",
                "5",
                "-r",
                "5",
                "--memsoak-requests",
                str(MEASURED),
                "--memsoak-warmup",
                str(WARMUP),
                "--memsoak-checkpoints",
                "3",
                "--memsoak-sample-interval",
                "0.3",
                "--memsoak-out",
                str(tmp_path / "out"),
            ],
            cwd=tmp_path,
            env={**os.environ, "MEMSOAK_TOKEN": token},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/stats/requests", process, log)
        yield url, target.url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _rows(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [" | ".join(row.split("\t")) for row in page.locator("table tbody tr").all_inner_texts()]


def _release(target_url: str, count: int) -> None:
    with urllib.request.urlopen(f"{target_url}/release?n={count}", timeout=30) as response:
        assert response.status == 200


def _wait_for_rows(page, wanted: Callable[[list[str]], bool], what: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The rows the page shows once they are what the test waits for (the page refreshes itself
    every couple of seconds; the load stands still meanwhile, so the state cannot pass us by)."""
    deadline = time.monotonic() + 300
    rows: list[str] = []
    while time.monotonic() < deadline:
        rows = _rows(page)
        if wanted(rows):
            return rows
        time.sleep(0.3)
    pytest.fail(f"the Memory tab never showed {what}; it showed {rows}")


def test_memory_tab_shows_live_memory_and_suspects(locust_web: tuple[str, str], tmp_path: Path) -> None:
    web_url, target_url = locust_web
    with browser_page() as (page, errors):
        page.goto(web_url + "/")
        page.get_by_role("button", name="Start").click()  # a run started from the UI, as a user would
        page.get_by_role("tab", name="Memory").click()
        page.locator("table tbody tr").first.wait_for(timeout=30_000)
        headers = page.locator("table thead th").all_inner_texts()
        assert headers == ["What", "Now", "Per measured request", "Detail"]
        # The target serves a request only for a permit, so each state below holds until the
        # test has read it: warm-up, measuring before the first checkpoint, measuring with the
        # checkpoint's suspects, then done.
        seen = [
            _wait_for_rows(
                page,
                lambda rows: (
                    rows[:1] == [f"requests | 0 of {WARMUP} warm-up |  | 0 snapshots taken"]
                    and any(r.startswith("RSS | waiting for the baseline snapshot") for r in rows)
                ),
                "the warm-up waiting for its baseline",
            )
        ]
        _release(target_url, WARMUP + 120)
        seen.append(
            _wait_for_rows(
                page,
                lambda rows: (
                    rows[:1] == [f"requests | 120 of {MEASURED:,} measured |  | 1 snapshots taken"]
                    and any(r.startswith("RSS | ") and "MiB" in r for r in rows)
                ),
                "120 measured requests after the baseline",
            )
        )
        _release(target_url, 140)  # past the first checkpoint, at 200 measured requests
        seen.append(
            _wait_for_rows(
                page,
                lambda rows: (
                    rows[:1] == [f"requests | 260 of {MEASURED:,} measured |  | 2 snapshots taken"]
                    and any(r.startswith("suspect #1 fetchuserdata.py:6") for r in rows)
                ),
                "the first checkpoint's suspect at 260 measured requests",
            )
        )
        page.screenshot(path=str(tmp_path / "memory-tab-running.png"), full_page=True)
        assert not any("verdict" in row for row in seen[-1]), seen[-1]
        _release(target_url, MEASURED * 10)  # the rest of the run; the budget, not permits, ends it
        # Locust's page stops polling once the run has stopped; a reload shows the final state,
        # and the tab can be linked to directly.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            page.goto(f"{web_url}/?tab=memsoak-memory")
            page.locator("table tbody tr").first.wait_for(timeout=30_000)
            rows = _rows(page)
            if rows[0].startswith("verdict | "):
                seen.append(rows)
                break
            time.sleep(2)
        page.screenshot(path=str(tmp_path / "memory-tab.png"), full_page=True)
        assert errors == []
    # The RSS shown grew between the two measured states the page showed.
    rss_then, rss_later = (_rss_mib(rows) for rows in seen[1:3])
    assert rss_later > rss_then, seen
    last = seen[-1]
    assert last[0].startswith("verdict | LEAK | "), last
    last = last[1:]
    assert last[0] == f"requests | {MEASURED:,} of {MEASURED:,} measured |  | 4 snapshots taken", last
    assert last[1].startswith("RSS | ") and "MiB" in last[1], last
    assert last[2].startswith("traced memory | "), last
    (suspect,) = [r for r in last if r.startswith("suspect #1 ")]
    assert suspect.startswith("suspect #1 fetchuserdata.py:6") and suspect.endswith("users_list.extend(data)")
    # the rate column: about 40 KB per request for the seed leak
    rate = float(suspect.split(" | ")[2].removesuffix(" B").replace(",", ""))
    assert 30_000 < rate < 50_000, suspect


def _rss_mib(rows: list[str]) -> float:
    (rss,) = [row for row in rows if row.startswith("RSS | ")]
    return float(rss.split(" | ")[1].removesuffix(" MiB").replace(",", ""))
