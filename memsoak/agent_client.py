"""The harness's side of the agent's control endpoint: JSON over HTTP with a bearer token.

Plain urllib, so it works in the CLI and, once gevent has patched sockets, inside Locust.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from memsoak.agent.middleware import PREFIX
from memsoak.errors import MemsoakError, TargetError

MAX_RESPONSE_BYTES = 2 * 1024 * 1024 * 1024  # a snapshot of millions of traces is ~100 MB


class AgentError(TargetError):
    """The agent did not answer, or answered with an error."""


class AgentClient:
    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        if not token:
            raise MemsoakError("no agent token: pass --agent-token or set MEMSOAK_TOKEN")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def _call(self, method: str, name: str, body: dict[str, Any] | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.base_url}{PREFIX}{name}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload: bytes = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise AgentError(
                    f"the agent at {self.base_url} refused the token (HTTP {exc.code})"
                ) from None
            raise AgentError(f"the agent at {self.base_url} answered HTTP {exc.code} to {name}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AgentError(f"no agent answering at {self.base_url}: {reason}") from None
        if len(payload) > MAX_RESPONSE_BYTES:
            raise AgentError(f"the agent's {name} response is over {MAX_RESPONSE_BYTES} bytes")
        return payload

    def _json(self, method: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = self._call(method, name, body)
        try:
            doc = json.loads(payload)
        except ValueError:
            raise AgentError(f"the agent's {name} response is not JSON") from None
        if not isinstance(doc, dict):
            raise AgentError(f"the agent's {name} response is not a JSON object")
        return doc

    def status(self) -> dict[str, Any]:
        doc = self._json("GET", "status")
        for key in ("pid", "rss_bytes", "traced_bytes"):
            if type(doc.get(key)) is not int:
                raise AgentError(f"the agent's status has no integer {key!r}")
        return doc

    def snapshot(self, min_site_bytes: int = 0) -> dict[str, Any]:
        """The snapshot document as sent (see analysis.snapshot_io), parsed but not validated."""
        return self._json("POST", "snapshot", {"min_site_bytes": min_site_bytes})

    def collect_garbage(self) -> dict[str, Any]:
        return self._json("POST", "gc", {})

    def retention(self, suspects: list[dict[str, Any]], max_seconds: float = 10.0) -> dict[str, Any]:
        """What keeps each suspect alive (memsoak/agent/retention.py): [{"traceback": [[file,
        line], ...], "live_bytes": int}] in, {"suspects": [...], ...} out."""
        return self._json("POST", "retention", {"suspects": suspects, "max_seconds": max_seconds})

    def set_tracing(self, enable: bool, frames: int | None = None) -> dict[str, Any]:
        return self._json("POST", "tracing", {"enable": enable, "frames": frames})
