"""The Memory tab in Locust's web UI: real target, real `locust` with its web UI, real browser."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import browser_page
from tests.conftest import REPO

MEASURED = 600


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
def locust_web(start_target, token: str, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    target = start_target("targets.seed_leak.app:app")
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
                "50",
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
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _rows(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [" | ".join(row.split("\t")) for row in page.locator("table tbody tr").all_inner_texts()]


def test_memory_tab_shows_live_memory_and_suspects(locust_web: str, tmp_path: Path) -> None:
    with browser_page() as (page, errors):
        page.goto(locust_web + "/")
        page.get_by_role("button", name="Start").click()  # a run started from the UI, as a user would
        page.get_by_role("tab", name="Memory").click()
        page.locator("table tbody tr").first.wait_for(timeout=30_000)
        headers = page.locator("table thead th").all_inner_texts()
        assert headers == ["What", "Now", "Per measured request", "Detail"]
        seen: list[list[str]] = []
        deadline = time.monotonic() + 300
        # Poll what the page shows (it refreshes itself every two seconds) while the run goes;
        # the run stops itself after MEASURED requests and the tab then leads with the verdict.
        while time.monotonic() < deadline:
            rows = _rows(page)
            if not seen or rows != seen[-1]:
                seen.append(rows)
                if any(r.startswith("suspect #1 ") for r in rows) and not any("verdict" in r for r in rows):
                    page.screenshot(path=str(tmp_path / "memory-tab-running.png"), full_page=True)
            if rows and rows[0].startswith(f"requests | {MEASURED:,} of"):
                break
            time.sleep(0.5)
        # Locust's page stops polling once the run has stopped; a reload shows the final state,
        # and the tab can be linked to directly.
        while time.monotonic() < deadline:
            page.goto(f"{locust_web}/?tab=memsoak-memory")
            page.locator("table tbody tr").first.wait_for(timeout=30_000)
            rows = _rows(page)
            if rows[0].startswith("verdict | "):
                seen.append(rows)
                break
            time.sleep(2)
        page.screenshot(path=str(tmp_path / "memory-tab.png"), full_page=True)
        assert errors == []
    assert len(seen) >= 4, seen  # waiting, then growing at each refresh, then done
    during = [rows for rows in seen if rows and rows[0].startswith("requests | ")]
    assert len({rows[0] for rows in during}) >= 2, during  # the request count moved on screen
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
