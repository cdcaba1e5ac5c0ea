"""Errors that end a command. Each carries the exit code DESIGN.md gives it."""

from __future__ import annotations


class MemsoakError(Exception):
    """Bad usage or configuration: exit 2, one line, no traceback."""

    exit_code = 2


class TargetError(MemsoakError):
    """The target did not start, died, or its agent did not answer: exit 3."""

    exit_code = 3
