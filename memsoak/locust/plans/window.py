"""A window: K requests after a plan's series, with a start and an end action, that no figure
counts (plans/base.py says how a plan runs them)."""

from __future__ import annotations

from analysis.model import Phase
from analysis.report import Report
from memsoak.locust.session import Session


class Window:
    requests = 100
    name = "window"  # the phase's name in the report: "{requests} {name}, traced N frames deep"
    optional = False  # skipped when a plan's cap leaves no room for it (`Plan.window_room`)

    def __init__(self, session: Session, depth: int = 0) -> None:
        self.session = session
        self.depth = depth  # how deep the window looks
        self.took = ""  # what it took, for the report's phases; set by `close`

    def open(self, report: Report) -> str | None:
        """The start action, once the series ended with `report`: the event to note, or None
        when the window is not wanted or could not open (it is then skipped)."""
        raise NotImplementedError

    def close(self, seen: int) -> None:
        """The end action, after `seen` requests (fewer when the run was cut short): gather what
        the window watched into the session's RunData."""
        raise NotImplementedError

    def phase(self, seen: int) -> Phase:
        return Phase(self.name, seen, self.depth, self.took)
