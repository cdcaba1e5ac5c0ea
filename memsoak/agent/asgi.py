"""The agent as ASGI middleware, for FastAPI, Starlette and Django's ASGI application:

    app = memsoak.agent.AsgiAgent(app, token=...)

The door is the WSGI agent's own (`Agent`, or a multi-worker target's `FanoutAgent`): the same
reserved prefix, token, loopback check, JSON and limits, reached through an environ made from the
ASGI scope. Everything else, lifespan events included, goes to the app untouched.

A control request runs on the event loop's thread and holds it: the collection and the fork of a
snapshot happen while no other coroutine runs, so no request is half-handled in the heap the
snapshot sees, as under gevent (DESIGN.md: `take_snapshot` blocks the event loop). Only waiting
for a forked child's document happens off the loop, so the app serves meanwhile.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from typing import Any

from memsoak.agent.middleware import LOOPBACK, MAX_BODY_BYTES, Agent, _Stream
from memsoak.protocol import PREFIX

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def no_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    raise AssertionError("the door answers the reserved prefix only")  # never reached


class AsgiAgent:
    def __init__(
        self,
        app: ASGIApp,
        token: str | None = None,
        *,
        allow: Sequence[str] = LOOPBACK,
        door: Agent | None = None,
        **agent_options: Any,
    ) -> None:
        """`door`: the WSGI agent that answers the control requests (made from `token`,
        `allow` and `agent_options` when not given)."""
        self.app = app
        self.door = door if door is not None else Agent(no_app, token, allow=allow, **agent_options)

    @property
    def requests_served(self) -> int:
        return self.door.requests_served

    def __getattr__(self, name: str) -> Any:
        # A multi-worker target's server hooks reach the fan-out door's control socket here.
        if name in ("start_control", "stop_control", "run_dir"):
            return getattr(self.door, name)
        raise AttributeError(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(PREFIX):
            if scope["type"] == "http":
                self.door.requests_served += 1
            await self.app(scope, receive, send)
            return
        environ = _environ(scope)
        # The body is read only once the door would let the request in (as a WSGI server leaves
        # it unread), and no further than the door's limit: past it the door refuses it (413).
        if self.door._client_allowed(environ) and self.door._authorized(environ):
            body = await _read_body(receive)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ["wsgi.input"] = io.BytesIO(body)
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            started.update(status=int(status.split(" ", 1)[0]), headers=headers)

        chunks = self.door(environ, start_response)
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in started["headers"]]
        try:
            await send({"type": "http.response.start", "status": started["status"], "headers": headers})
            if isinstance(chunks, _Stream):
                await _send_stream(iter(chunks), send)
            else:
                await send({"type": "http.response.body", "body": b"".join(chunks)})
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


async def _read_body(receive: Receive) -> bytes:
    """The request body, read until it is whole or over the agent's limit (the rest is left)."""
    parts: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: what came is all there is
        parts.append(message.get("body", b""))
        size += len(parts[-1])
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _environ(scope: Scope) -> dict[str, Any]:
    """The WSGI environ the door reads: method, path, the socket's peer address (never a
    forwarded header) and the Authorization header; no body until the door would read one."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    client = scope.get("client") or ("", 0)
    return {
        "REQUEST_METHOD": scope.get("method", "GET"),
        "PATH_INFO": scope.get("path", ""),
        "REMOTE_ADDR": client[0] or "",
        "HTTP_AUTHORIZATION": headers.get("authorization", ""),
        "CONTENT_LENGTH": "0",
        "wsgi.input": io.BytesIO(b""),
    }


_DONE = object()


async def _send_stream(chunks: Iterator[bytes], send: Send) -> None:
    """A forked child's document: each chunk is waited for in a thread, so the loop serves the
    app while the child builds it."""
    loop = asyncio.get_running_loop()
    while True:
        chunk = await loop.run_in_executor(None, next, chunks, _DONE)
        if chunk is _DONE:
            break
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
