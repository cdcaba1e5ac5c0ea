"""The agent: WSGI middleware that adds a token-guarded control endpoint to any app.

Everything outside `PREFIX` goes to the app untouched. Under `PREFIX` the agent answers JSON
only (and Prometheus' text format at `metrics`), to allowed client addresses only (loopback by
default, judged from the socket's peer address, never from headers such as X-Forwarded-For),
and only with the right bearer token. It never reads or writes a file whose name comes from a
request. Request bodies and responses have size limits, and snapshots (which pause the whole
process) are rate-limited.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeGuard

from memsoak.agent import forked, native, tracing
from memsoak.protocol import MAX_CALLER_LINES, PREFIX

LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_BODY_BYTES = 64 * 1024
MAX_AUTHORIZATION_BYTES = 4096
MAX_RESPONSE_BYTES = 1024 * 1024 * 1024
# A snapshot blocks the target for up to seconds: a burst of this many, then one per interval.
SNAPSHOT_BURST = 10
SNAPSHOT_INTERVAL_S = 1.0

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Raw:
    """A response that is not JSON (the Prometheus text format)."""

    def __init__(self, content_type: str, body: bytes) -> None:
        self.content_type = content_type
        self.body = body


class _Stream:
    """A JSON response sent as it is made, without a length known in advance. WSGI servers call
    `close()` however the response ended (sent, client gone, error), so `on_close` runs even
    when no chunk was asked for."""

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._chunks = chunks
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._on_close()


class _Refusal(Exception):
    def __init__(self, status: str, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def parse_allow(networks: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The client networks allowed to use the agent; ValueError names the bad entry."""
    parsed = []
    for net in networks:
        try:
            parsed.append(ipaddress.ip_network(net.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network (CIDR): {net!r}") from None
    return tuple(parsed)


class _SnapshotLimiter:
    """A token bucket, plus one snapshot at a time (threaded servers could start two)."""

    def __init__(self, burst: int, interval_s: float) -> None:
        self._burst = burst
        self._interval_s = interval_s
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self.running = threading.Lock()

    def wait_s(self) -> float:
        """0 and a token taken, or how long to wait before the next snapshot is allowed."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) / self._interval_s)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) * self._interval_s


class Agent:
    """`app.wsgi_app = Agent(app.wsgi_app, token=...)` installs the agent in a Flask app."""

    def __init__(
        self,
        app: WSGIApp,
        token: str | None = None,
        *,
        allow: Sequence[str] = LOOPBACK,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        snapshot_burst: int = SNAPSHOT_BURST,
        snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
        fork_children: bool | None = None,
    ) -> None:
        """`fork_children`: build snapshots (and, when asked, search for retention) in forked
        children (`memsoak.agent.forked`); by default wherever that is available."""
        token = token or os.environ.get("MEMSOAK_TOKEN")
        if not token:
            raise ValueError("the memsoak agent needs a token (argument or MEMSOAK_TOKEN)")
        self.app = app
        # Only the token's digest is kept, and digests are compared in constant time: both have
        # the same length whatever the token's, so neither timing nor length leaks through it.
        self._token_digest = _digest(token)
        self._allowed = parse_allow(allow)
        self._max_response_bytes = max_response_bytes
        self._snapshots = _SnapshotLimiter(snapshot_burst, snapshot_interval_s)
        self._fork_children = forked.available() if fork_children is None else fork_children
        self.requests_served = 0
        self._metrics: Any = None  # memsoak.agent.metrics.Metrics, made at the first scrape
        self._routes: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "status"): self._status,
            ("POST", "snapshot"): self._snapshot,
            ("POST", "gc"): self._gc,
            ("POST", "tracing"): self._tracing,
            ("GET", "metrics"): self._metrics_text,
            ("POST", "retention"): self._retention,
            ("POST", "callers/start"): self._callers_start,
            ("POST", "callers/stop"): self._callers_stop,
            ("POST", "native/start"): self._native_start,
            ("POST", "native/stop"): self._native_stop,
        }
        self._native = native.NativeControl(lambda: self.requests_served)
        self._callers: Any = None  # memsoak.agent.callers.CallerWatch, while one is asked for

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            self.requests_served += 1
            return self.app(environ, start_response)
        try:
            body = self._control(environ, path[len(PREFIX) :])
            if isinstance(body, _Stream):
                headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
                start_response("200 OK", headers)
                return body
            if not isinstance(body, _Raw):
                body = _Raw("application/json", json.dumps(body, separators=(",", ":")).encode())
            data = body.body
            if len(data) > self._max_response_bytes:
                raise _Refusal(
                    "507 Insufficient Storage",
                    f"response of {len(data)} bytes is over the limit of {self._max_response_bytes}; "
                    "ask for a larger min_site_bytes",
                )
            return self._respond(start_response, "200 OK", data, content_type=body.content_type)
        except _Refusal as refusal:
            data = json.dumps({"error": str(refusal)}).encode()
            return self._respond(start_response, refusal.status, data, refusal.headers)
        except Exception as exc:  # noqa: BLE001 - JSON even when the agent itself fails
            data = json.dumps({"error": f"agent failure: {type(exc).__name__}"}).encode()
            return self._respond(start_response, "500 Internal Server Error", data)

    def _respond(
        self,
        start_response: StartResponse,
        status: str,
        data: bytes,
        extra_headers: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> list[bytes]:
        start_response(
            status,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-store"),
                *extra_headers,
            ],
        )
        return [data]

    def _client_allowed(self, environ: dict[str, Any]) -> bool:
        try:
            address = ipaddress.ip_address(environ.get("REMOTE_ADDR", "").split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self._allowed)

    def _authorized(self, environ: dict[str, Any]) -> bool:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if len(header) > MAX_AUTHORIZATION_BYTES:
            return False
        scheme, _, provided = header.partition(" ")
        if scheme.lower() != "bearer" or not provided:
            return False
        # Constant time: compare_digest over two SHA-256 digests, so the comparison takes the
        # same time whatever the provided token's content or length.
        return hmac.compare_digest(_digest(provided.strip()), self._token_digest)

    def _read_json(self, environ: dict[str, Any]) -> dict[str, Any]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise _Refusal("400 Bad Request", "bad Content-Length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _Refusal("413 Content Too Large", f"body over {MAX_BODY_BYTES} bytes")
        if length == 0:
            return {}
        try:
            body = json.loads(environ["wsgi.input"].read(length))
        except (ValueError, RecursionError):
            raise _Refusal("400 Bad Request", "body is not JSON") from None
        if not isinstance(body, dict):
            raise _Refusal("400 Bad Request", "body must be a JSON object")
        return body

    def _control(self, environ: dict[str, Any], name: str) -> dict[str, Any] | _Raw | _Stream:
        if not self._client_allowed(environ):
            raise _Refusal("403 Forbidden", "forbidden")
        if not self._authorized(environ):
            raise _Refusal("401 Unauthorized", "unauthorized")
        method = environ.get("REQUEST_METHOD", "GET")
        handler = self._routes.get((method, name))
        if handler is None:
            if any(route == name for _, route in self._routes):
                raise _Refusal("405 Method Not Allowed", "method not allowed")
            raise _Refusal("404 Not Found", "no such control endpoint")
        try:
            return handler(self._read_json(environ))
        except RuntimeError as exc:
            raise _Refusal("409 Conflict", str(exc)) from None
        except native.BadRequest as exc:
            raise _Refusal("400 Bad Request", str(exc)) from None

    def _status(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {**tracing.status(), "requests_served": self.requests_served}

    def _snapshot(self, body: dict[str, Any]) -> dict[str, Any] | _Stream:
        """`{"min_site_bytes": int, "announce": bool}`. With `announce` (and a forked snapshot),
        the answer starts at once with a byte of JSON whitespace: its headers tell the client the
        target's state is taken, so its load may resume while the document arrives; a failure
        after that is an `{"error"}` document (its status is already sent)."""
        min_site_bytes = body.get("min_site_bytes", 0)
        announce = body.get("announce", False)
        if type(min_site_bytes) is not int or not 0 <= min_site_bytes <= 1 << 30:
            raise _Refusal("400 Bad Request", "min_site_bytes must be an integer 0..2**30")
        if not isinstance(announce, bool):
            raise _Refusal("400 Bad Request", "announce must be true or false")
        wait_s = self._snapshots.wait_s()
        if wait_s > 0:
            raise _Refusal(
                "429 Too Many Requests",
                f"snapshot rate limit: retry in {wait_s:.1f} s",
                [("Retry-After", str(max(1, round(wait_s + 0.5))))],
            )
        if not self._snapshots.running.acquire(blocking=False):
            raise _Refusal(
                "429 Too Many Requests", "a snapshot is already being taken", [("Retry-After", "1")]
            )
        try:
            if not self._fork_children:
                return self._snapshot_in_process(min_site_bytes)
            try:
                limit = self._max_response_bytes
                snapshot = forked.ForkedSnapshot(min_site_bytes, limit, background=announce)
            except OSError:  # no fork now (a process or memory limit): the slower way still works
                return self._snapshot_in_process(min_site_bytes)
        finally:
            # Released once the child is forked: another snapshot may fork its own meanwhile
            # (the rate limit bounds how many), as the target is no longer paused.
            self._snapshots.running.release()
        chunks = self._forked_chunks(snapshot)
        if announce:
            return _Stream(_announced(chunks), snapshot.close)
        return _awaited(snapshot, chunks)

    def _snapshot_in_process(self, min_site_bytes: int) -> dict[str, Any]:
        doc = tracing.take_snapshot(min_site_bytes)
        if self._metrics is not None:
            self._metrics.growth.observe(doc)
        return doc

    def _forked_chunks(self, snapshot: forked.ForkedSnapshot) -> Iterator[bytes]:
        """The child's document as it comes; ChildFailed before the first chunk if it cannot."""
        if self._metrics is not None and self._metrics.growth.watching:
            # Metrics read the sites: only a target someone scrapes pays for parsing them here.
            data = b"".join(snapshot.document())
            self._metrics.growth.observe(json.loads(data))
            yield data
        else:
            yield from snapshot.document()

    def _metrics_text(self, _body: dict[str, Any]) -> _Raw:
        if self._metrics is None:
            from memsoak.agent.metrics import Metrics

            self._metrics = Metrics(lambda: self._status({}))
        return _Raw(*self._metrics.render())

    def _gc(self, _body: dict[str, Any]) -> dict[str, Any]:
        import gc

        return {"collected": gc.collect()}

    def _retention(self, body: dict[str, Any]) -> dict[str, Any] | _Stream:
        """What keeps each suspect alive. The suspects come as data (tracebacks of [file, line]
        pairs, compared with tracemalloc's), never as names of files to open. With `"fork": true`
        the search runs in a forked child (forked.py: at a cost in memory) and the target goes
        on serving meanwhile."""
        from memsoak.agent.retention import MAX_SUSPECTS, find_retention

        suspects = body.get("suspects")
        max_seconds = body.get("max_seconds", 10.0)
        fork = body.get("fork", False)
        if not _list_of(suspects, MAX_SUSPECTS, _is_suspect) or not _seconds(max_seconds, 120):
            raise _Refusal(
                "400 Bad Request",
                f"expected {{'suspects': [{{'traceback': [[file, line], ...], 'live_bytes': int}}] "
                f"(1..{MAX_SUSPECTS}), 'max_seconds': 0..120}}",
            )
        if not isinstance(fork, bool):
            raise _Refusal("400 Bad Request", "fork must be true or false")
        if fork and self._fork_children:
            try:
                search = forked.ForkedRetention(suspects, float(max_seconds))
            except OSError:  # no fork now: the search still runs, pausing the target
                pass
            else:
                return _awaited(search, search.document())
        return find_retention(suspects, max_seconds=float(max_seconds))

    def _callers_start(self, body: dict[str, Any]) -> dict[str, Any]:
        """Watch the call paths reaching some source lines (data compared with code objects'
        file names, never opened by name) until `callers/stop` or `max_seconds`."""
        from memsoak.agent.callers import CallerWatch

        lines = body.get("lines")
        depth = body.get("depth")
        max_seconds = body.get("max_seconds", 60.0)
        if (
            not _list_of(lines, MAX_CALLER_LINES, _is_line)
            or type(depth) is not int
            or not 1 <= depth <= 100
            or not _seconds(max_seconds, 600)
        ):
            raise _Refusal(
                "400 Bad Request",
                f"expected {{'lines': [[file, line], ...] (1..{MAX_CALLER_LINES}), 'depth': 1..100, "
                "'max_seconds': 0..600}",
            )
        if self._callers is not None:
            self._callers.stop()
        self._callers = CallerWatch([(f, n) for f, n in lines], depth, float(max_seconds))
        self._callers.start()
        return {"watching": True}

    def _callers_stop(self, _body: dict[str, Any]) -> dict[str, Any]:
        watch, self._callers = self._callers, None
        if watch is None:
            raise RuntimeError("no call paths are being watched")
        watch.stop()
        return watch.answer()

    def _native_start(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._native.start(body)  # memray around the next requests (memsoak.agent.native)

    def _native_stop(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._native.stop(body)

    def _tracing(self, body: dict[str, Any]) -> dict[str, Any]:
        enable = body.get("enable")
        frames = body.get("frames")
        if not isinstance(enable, bool) or not (
            frames is None or (type(frames) is int and 1 <= frames <= 100)
        ):
            raise _Refusal("400 Bad Request", "expected {'enable': bool, 'frames': 1..100}")
        return tracing.set_tracing(enable, frames)


def _awaited(child: forked.ForkedWork, chunks: Iterator[bytes]) -> _Stream:
    """A child's answer sent once its first bytes are in, so that a failure still has its own
    status: 507 for a document over the size limit, 500 for a child that died."""
    try:
        first = next(chunks)
    except BaseException as exc:
        child.close()
        if not isinstance(exc, forked.ChildFailed):
            raise
        too_large = isinstance(exc, forked.DocumentTooLarge)
        status = "507 Insufficient Storage" if too_large else "500 Internal Server Error"
        raise _Refusal(status, str(exc)) from None
    return _Stream(_prepended(first, chunks), child.close)


def _announced(chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield b"\n"
    try:
        first = next(chunks)
    except forked.ChildFailed as exc:
        yield json.dumps({"error": str(exc)}).encode()
        return
    yield first
    yield from chunks


def _prepended(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _list_of(value: Any, most: int, valid: Callable[[Any], bool]) -> TypeGuard[list[Any]]:
    """A JSON list of 1..`most` items, each `valid`."""
    return isinstance(value, list) and 1 <= len(value) <= most and all(valid(item) for item in value)


def _seconds(value: Any, most: float) -> bool:
    return type(value) in (int, float) and 0 < value <= most


def _is_line(doc: Any) -> bool:
    return isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], str) and type(doc[1]) is int


def _is_suspect(doc: Any) -> bool:
    if not isinstance(doc, dict) or type(doc.get("live_bytes", 0)) is not int:
        return False
    return _list_of(doc.get("traceback"), 100, _is_line)
