"""Report writers. Each module has `FORMAT` (its name on the command line), `FILENAME` (where it
goes in a run directory) and `render(report, file)`; `WRITERS` lists them by format name.

Writers are small and independent so that `--format` can pick any subset and a new one is one
module plus one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TextIO

from analysis.report import Report
from analysis.writers import csv_series, html, json_report, junit, markdown

Render = Callable[[Report, TextIO], None]

_MODULES: tuple[ModuleType, ...] = (json_report, markdown, html, junit, csv_series)

# format name -> (file name in the run directory, render function)
WRITERS: dict[str, tuple[str, Render]] = {m.FORMAT: (m.FILENAME, m.render) for m in _MODULES}


def preload(formats: Iterable[str] | None = None) -> None:
    """Run the chosen writers' optional `preload()`: the imports a first render would pay for,
    done while something else is waiting (the plugin calls it during the retention search)."""
    for name in formats or WRITERS:
        module = next(m for m in _MODULES if m.FORMAT == name)
        warm_up = getattr(module, "preload", None)
        if warm_up is not None:
            warm_up()


class UnknownFormat(ValueError):
    pass


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """`"html,junit"` (or an iterable of names) -> known format names in that order; `all` or
    nothing means every writer. Unknown names raise `UnknownFormat` naming the known ones."""
    names = text.split(",") if isinstance(text, str) else list(text)
    picked: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            return tuple(WRITERS)
        if name not in WRITERS:
            raise UnknownFormat(f"unknown report format {name!r} (known: all, {', '.join(WRITERS)})")
        if name not in picked:
            picked.append(name)
    return tuple(picked) or tuple(WRITERS)
