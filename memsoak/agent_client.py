"""The harness's side of the agent's control endpoint: JSON over HTTP with a bearer token.

Plain urllib, so it works in the CLI and, once gevent has patched sockets, inside Locust.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from memsoak.errors import MemsoakError, TargetError
from memsoak.protocol import PREFIX

MAX_RESPONSE_BYTES = 2 * 1024 * 1024 * 1024  # a snapshot of millions of traces is ~100 MB
RATE_LIMITED = 429


class AgentError(TargetError):
    """The agent did not answer, or answered with an error."""


class AgentRefused(AgentError):
    """The agent answered but refused the token: a configuration error, not a failed target."""

    exit_code = 2


class AgentTimeout(AgentError):
    """The agent did not answer within the client's timeout (a hung or stopped target)."""


class AgentUnreachable(AgentError):
    """Nothing accepted the connection: no target there, or one still starting."""


class _RateLimited(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s


def _retry_after_s(header: str | None) -> float:
    try:
        value = float(header or 1)
    except ValueError:
        return 1.0
    return min(max(value, 0.1), 30.0) if value == value else 1.0


def parse_response(name: str, payload: bytes) -> dict[str, Any]:
    """An agent response body as a JSON object, or AgentError saying why not."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        raise AgentError(f"the agent's {name} response is not JSON") from None
    if not isinstance(doc, dict):
        raise AgentError(f"the agent's {name} response is not a JSON object")
    return doc


def check_status(doc: dict[str, Any]) -> dict[str, Any]:
    for key in ("pid", "rss_bytes", "traced_bytes"):
        value = doc.get(key)
        if type(value) is not int or value < 0:
            raise AgentError(f"the agent's status has no non-negative integer {key!r}")
    return doc


class AgentClient:
    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        if not token:
            raise MemsoakError("no agent token: pass --agent-token or set MEMSOAK_TOKEN")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._closed: str | None = None

    def close(self, reason: str) -> None:
        """Send nothing more: every call from now on fails at once, with `reason`."""
        self._closed = reason

    def _call(
        self,
        method: str,
        name: str,
        body: dict[str, Any] | None = None,
        on_headers: Callable[[], object] | None = None,
    ) -> bytes:
        """The response body, retrying while the agent rate-limits (HTTP 429), within the timeout.
        `on_headers` runs once a successful response's headers are in, before its body is read."""
        if self._closed is not None:
            raise AgentUnreachable(f"no more requests to the agent: {self._closed}")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self._call_once(method, name, body, on_headers)
            except _RateLimited as limited:
                if time.monotonic() + limited.retry_after_s > deadline:
                    raise AgentError(
                        f"the agent at {self.base_url} kept refusing {name} (rate limit)"
                    ) from None
                time.sleep(limited.retry_after_s)

    def _call_once(
        self, method: str, name: str, body: dict[str, Any] | None, on_headers: Callable[[], object] | None
    ) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.base_url}{PREFIX}{name}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if on_headers is not None:
                    on_headers()
                payload: bytes = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AgentRefused(
                    f"the agent at {self.base_url} refused the token (HTTP {exc.code})"
                ) from None
            if exc.code == RATE_LIMITED:
                raise _RateLimited(_retry_after_s(exc.headers.get("Retry-After"))) from None
            answered = f"the agent at {self.base_url} answered HTTP {exc.code} to {name}"
            raise AgentError(answered + _refusal(exc)) from None
        except TimeoutError:
            raise AgentTimeout(
                f"the agent at {self.base_url} did not answer {name} within {self.timeout:g} s"
            ) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise AgentTimeout(
                    f"the agent at {self.base_url} did not answer {name} within {self.timeout:g} s"
                ) from None
            raise AgentUnreachable(f"no agent answering at {self.base_url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # HTTPException: a response that is not HTTP (BadStatusLine, IncompleteRead, ...).
            detail = " ".join(f"{type(exc).__name__}: {exc!s:.200}".split())  # one line, whatever it sent
            raise AgentError(f"no agent answering at {self.base_url}: {detail}") from None
        if len(payload) > MAX_RESPONSE_BYTES:
            raise AgentError(f"the agent's {name} response is over {MAX_RESPONSE_BYTES} bytes")
        return payload

    def _json(self, method: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return parse_response(name, self._call(method, name, body))

    def status(self) -> dict[str, Any]:
        return check_status(self._json("GET", "status"))

    def snapshot(
        self, min_site_bytes: int = 0, on_taken: Callable[[], object] | None = None
    ) -> dict[str, Any]:
        """The snapshot document as sent (see analysis.snapshot_io), parsed but not validated.
        `on_taken` runs as soon as the agent says the target's state is taken (an agent that
        builds the document in a forked child says so before sending it), while it arrives."""
        request = {"min_site_bytes": min_site_bytes, "announce": on_taken is not None}
        payload = self._call("POST", "snapshot", request, on_taken)
        doc = parse_response("snapshot", payload)
        if "error" in doc:  # a streamed answer cannot change its status once under way
            raise AgentError(f"the agent could not take a snapshot: {doc['error']!s:.300}")
        return doc

    def collect_garbage(self) -> dict[str, Any]:
        return self._json("POST", "gc", {})

    def retention(
        self, suspects: list[dict[str, Any]], max_seconds: float = 10.0, fork: bool = False
    ) -> dict[str, Any]:
        """What keeps each suspect alive (memsoak/agent/retention.py): [{"traceback": [[file,
        line], ...], "live_bytes": int}] in, {"suspects": [...], ...} out. `fork`: search in a
        forked child, the target serving meanwhile (memsoak/agent/forked.py)."""
        body = {"suspects": suspects, "max_seconds": max_seconds, "fork": fork}
        return self._json("POST", "retention", body)

    def watch_callers(self, lines: list[tuple[str, int]], depth: int, max_seconds: float) -> dict[str, Any]:
        """Start recording the call paths reaching `lines` (memsoak/agent/callers.py)."""
        body = {"lines": [list(line) for line in lines], "depth": depth, "max_seconds": max_seconds}
        return self._json("POST", "callers/start", body)

    def callers(self) -> dict[str, Any]:
        """Stop recording and answer {"depth": int, "lines": [{"file", "line", "calls",
        "paths": [{"calls", "frames": [[file, line, function, code], ...]}]}]}."""
        return self._json("POST", "callers/stop", {})

    def set_tracing(self, enable: bool, frames: int | None = None) -> dict[str, Any]:
        return self._json("POST", "tracing", {"enable": enable, "frames": frames})

    def start_native(self, max_seconds: float) -> dict[str, Any]:
        """Start memray's tracker with native stacks in the target (memsoak/agent/native.py)."""
        return self._json("POST", "native/start", {"max_seconds": max_seconds})

    def stop_native(self) -> dict[str, Any]:
        """Stop it and answer {"windows": [one per process: {"requests", "rss_start", "rss_end",
        "stacks": [{"bytes", "count", "frames": [[function, file, line], ...]}], ...}]}."""
        return self._json("POST", "native/stop", {})


def _refusal(exc: urllib.error.HTTPError) -> str:
    """The agent's own reason (its JSON `error`), when it gave one: a 409 says why it cannot
    (a native window where memray is missing, say)."""
    try:
        doc = json.loads(exc.read(4096))
    except (OSError, ValueError, http.client.HTTPException):
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return f": {error[:300]}" if isinstance(error, str) and error else ""
