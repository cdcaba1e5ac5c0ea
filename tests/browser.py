"""Headless Chromium for the tests: Debian's `chromium` driven by Python playwright.

`playwright install` cannot download browsers here, so the system one is used (scripts/test.sh
installs it with apt when it is missing).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    found = shutil.which("chromium")
    if not found:
        pytest.fail("no chromium: scripts/test.sh installs it (apt-get install chromium)")
    return found


@contextmanager
def browser_page(viewport: dict[str, int] | None = None) -> Iterator[tuple[Any, list[str]]]:
    """A fresh page and the list its console errors and page errors are collected in."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()
