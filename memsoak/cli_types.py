"""The `memsoak` command's argument types: each reads one value from the command line, or says
in one line what is wrong with it (argparse turns an ArgumentTypeError into the usage error)."""

from __future__ import annotations

import argparse
import ipaddress
import math
import urllib.parse
from collections.abc import Callable
from pathlib import Path


def positive_int(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def integer(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high:_}, got {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def token(text: str) -> str:
    # It travels in an HTTP header: printable ASCII without spaces, of a sane length.
    if not 1 <= len(text) <= 1024 or not all("!" <= c <= "~" for c in text):
        raise argparse.ArgumentTypeError("must be 1..1024 printable ASCII characters without spaces")
    return text


def directory(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no directory at {text!r}")
    return text


def existing_file(text: str) -> Path:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no locustfile at {text}")
    return Path(text)


def bind(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not host.replace("-", "").replace(".", "").isalnum():
            raise argparse.ArgumentTypeError(f"not a host name or IP address: {host!r}") from None
    return text


def network(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP network (CIDR): {text!r}") from None
    return text


def label(text: str) -> str:
    # Stored in the history and printed in tables: one short line.
    if not 1 <= len(text) <= 200 or not text.isprintable():
        raise argparse.ArgumentTypeError("must be 1..200 printable characters on one line")
    return text


def history_file(text: str) -> Path:
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"must name a file, not a directory: {text!r}")
    return path


def duration(text: str) -> float:
    from memsoak.defaults import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def app_spec(text: str) -> str:
    module, sep, attr = text.partition(":")
    if not sep or not module or not attr:
        raise argparse.ArgumentTypeError(f"must be MODULE:ATTR, got {text!r}")
    return text


def url(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        valid = False
    if not valid or "?" in text or "#" in text:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def formats(text: str) -> tuple[str, ...]:
    from analysis.writers import UnknownFormat, parse_formats

    try:
        return parse_formats(text)
    except UnknownFormat as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
