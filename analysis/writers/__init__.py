"""Report writers. Each module has `FILENAME` and `render(report, file)`; `WRITERS` lists them."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TextIO

from analysis.report import Report
from analysis.writers import json_report, markdown

Render = Callable[[Report, TextIO], None]

_MODULES: tuple[ModuleType, ...] = (json_report, markdown)

# format name -> (file name in the run directory, render function)
WRITERS: dict[str, tuple[str, Render]] = {m.FORMAT: (m.FILENAME, m.render) for m in _MODULES}
