"""The agent in a multi-worker target: whichever worker a control request reaches answers for all.

A pre-forked server (gunicorn with N workers) spreads requests, and so a leak, over N processes,
and the kernel hands each control request to one of them. So each worker's agent also listens on
a unix socket named after its pid in a private run directory (mode 0700, from the launcher, env
`MEMSOAK_AGENT_DIR`). The agent that gets `/__memsoak__/snapshot` (or status, gc, tracing) sends
the same request to every socket in the directory, does its own share meanwhile, and merges the
answers: one snapshot whose sites are summed per traceback, plus a row per worker
(analysis.merge). The sockets speak one JSON line in (`{"token", "op", "args"}`), one JSON document
out, then close; the token is checked there too, though only the directory's owner can connect.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from analysis.merge import merge_snapshot_docs
from analysis.snapshot_io import SnapshotFormatError
from memsoak.agent import tracing
from memsoak.agent.middleware import LOOPBACK, Agent, WSGIApp, _digest, _Refusal, _Stream

ENV_DIR = "MEMSOAK_AGENT_DIR"
SUFFIX = ".sock"
PEER_TIMEOUT_S = 600.0  # a snapshot of millions of traces takes seconds; a wedged worker is an error
MAX_LINE = 64 * 1024


class PeerError(Exception):
    pass


class FanoutAgent(Agent):
    """`Agent` whose control endpoints answer for every worker registered in `run_dir`."""

    def __init__(
        self,
        app: WSGIApp,
        token: str | None = None,
        *,
        allow: Sequence[str] = LOOPBACK,
        run_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        token = token or os.environ.get("MEMSOAK_TOKEN")
        super().__init__(app, token, allow=allow)
        directory = run_dir or os.environ.get(ENV_DIR)
        if not directory:
            raise ValueError(f"a fan-out agent needs a run directory (argument or {ENV_DIR})")
        self.run_dir = Path(directory)
        self._token = token or ""  # sent to the other workers' sockets
        self._local: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "status": super()._status,
            "snapshot": self._local_snapshot,
            "gc": super()._gc,
            "tracing": super()._tracing,
            "native/start": super()._native_start,
            "native/stop": super()._native_stop,
        }
        self._listener: socket.socket | None = None
        self.socket_path: Path | None = None

    # -- this worker's socket ----------------------------------------------------------------

    def start_control(self) -> Path:
        """Listen on `<run_dir>/<pid>.sock` in a background thread (call it in the worker, after
        the fork: threads do not survive one)."""
        # What a first snapshot would import or cache (sysconfig's tables, say) is paid now, before
        # the baseline: through the deeper stack of a peer request the agent's own frame can fall
        # outside the traced depth, and the allocation would pass for the app's.
        tracing.library_files()
        path = self.run_dir / f"{os.getpid()}{SUFFIX}"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(16)
        self._listener, self.socket_path = listener, path
        threading.Thread(target=self._serve_peers, name="memsoak-fanout", daemon=True).start()
        return path

    def stop_control(self) -> None:
        if self.socket_path is not None:
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()

    def _serve_peers(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    conn.sendall(json.dumps(self._answer_peer(_read_line(conn))).encode())
                except (OSError, ValueError):
                    continue

    def _answer_peer(self, line: bytes) -> dict[str, Any]:
        request = json.loads(line)
        if not isinstance(request, dict) or not hmac.compare_digest(
            _digest(str(request.get("token", ""))), self._token_digest
        ):
            return {"error": "unauthorized"}
        handler = self._local.get(str(request.get("op")))
        args = request.get("args")
        if handler is None or not isinstance(args, dict):
            return {"error": "bad request"}
        try:
            return {"ok": handler(args)}
        except (_Refusal, RuntimeError) as exc:
            return {"error": str(exc)}

    # -- answering for all -------------------------------------------------------------------

    def _local_snapshot(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = super()._snapshot(body)
        if isinstance(answer, _Stream):
            try:
                doc = json.loads(b"".join(answer))
            finally:
                answer.close()
        else:
            doc = answer
        if "error" in doc:
            raise RuntimeError(doc["error"])
        doc["requests_served"] = self.requests_served
        return doc

    def _gather(self, op: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        """This worker's answer and every other registered worker's, this one first. The others
        are asked before this one starts its own, so they work in parallel with it."""
        asked: list[tuple[Path, socket.socket]] = []
        request = json.dumps({"token": self._token, "op": op, "args": args}).encode() + b"\n"
        for path in sorted(self.run_dir.glob(f"*{SUFFIX}")):
            if path == self.socket_path:
                continue
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            peer.settimeout(PEER_TIMEOUT_S)
            try:
                peer.connect(str(path))
                peer.sendall(request)
            except ConnectionRefusedError:
                peer.close()  # a worker that exited without cleaning up (killed, say)
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            except OSError as exc:
                peer.close()
                _close_all(asked)
                raise _Refusal("502 Bad Gateway", f"worker {path.stem} unreachable: {exc}") from None
            asked.append((path, peer))
        try:
            answers = [self._local[op](args)]
            for path, peer in asked:
                answers.append(_receive(path, peer))
        except PeerError as exc:
            raise _Refusal("502 Bad Gateway", str(exc)) from None
        finally:
            _close_all(asked)
        return answers

    def _status(self, body: dict[str, Any]) -> dict[str, Any]:
        return _merge_status(self._gather("status", body))

    def _snapshot(self, body: dict[str, Any]) -> dict[str, Any]:
        parts = self._gather("snapshot", body)
        served = {int(p["pid"]): int(p.get("requests_served", 0)) for p in parts}
        try:
            return merge_snapshot_docs(parts, served)
        except SnapshotFormatError as exc:
            raise _Refusal("502 Bad Gateway", str(exc)) from None

    def _gc(self, body: dict[str, Any]) -> dict[str, Any]:
        parts = self._gather("gc", body)
        return {"collected": sum(int(p.get("collected", 0)) for p in parts)}

    def _tracing(self, body: dict[str, Any]) -> dict[str, Any]:
        return _merge_status(self._gather("tracing", body))

    def _native_start(self, body: dict[str, Any]) -> dict[str, Any]:
        parts = self._gather("native/start", body)
        return {"recording": True, "workers": len(parts)}

    def _native_stop(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every worker's window, side by side: analysis.native sums their stacks."""
        return {"windows": [w for part in self._gather("native/stop", body) for w in part["windows"]]}


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ValueError("request line too long")
    return data


def _receive(path: Path, peer: socket.socket) -> dict[str, Any]:
    chunks = []
    try:
        while chunk := peer.recv(1 << 20):
            chunks.append(chunk)
        reply = json.loads(b"".join(chunks))
    except (OSError, ValueError) as exc:
        raise PeerError(f"worker {path.stem} did not answer: {exc}") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        error = reply.get("error") if isinstance(reply, dict) else reply
        raise PeerError(f"worker {path.stem} refused: {error}")
    answer = reply["ok"]
    if not isinstance(answer, dict):
        raise PeerError(f"worker {path.stem} sent a malformed answer")
    return answer


def _close_all(asked: list[tuple[Path, socket.socket]]) -> None:
    for _, peer in asked:
        with contextlib.suppress(OSError):
            peer.close()


def _merge_status(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """This worker's status with the byte counts summed over all workers, plus one row each."""
    merged = dict(parts[0])
    for key in (
        "rss_bytes",
        "traced_bytes",
        "traced_peak_bytes",
        "tracemalloc_overhead_bytes",
        "requests_served",
        "allocated_blocks",
        "settled_blocks",
    ):
        merged[key] = sum(int(p.get(key, 0)) for p in parts)
    merged["workers"] = [
        {
            "pid": p.get("pid"),
            "rss_bytes": p.get("rss_bytes"),
            "traced_bytes": p.get("traced_bytes"),
            "requests_served": p.get("requests_served", 0),
        }
        for p in sorted(parts, key=lambda p: int(p.get("pid", 0)))
    ]
    return merged
