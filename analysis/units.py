"""Byte counts for people."""

from __future__ import annotations


def human_bytes(count: float) -> str:
    sign = "-" if count < 0 else ""
    value = abs(float(count))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{sign}{value:,.0f} {unit}" if unit == "B" else f"{sign}{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
