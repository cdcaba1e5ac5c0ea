"""Snapshots built in a forked child (memsoak.agent.forked): the same document as in-process, the
target free while the child works, failures said in JSON, and nothing of the child's work left
behind in the target for the next snapshot to see."""

from __future__ import annotations

import io
import json
import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from analysis.model import Snapshot, Traceback
from analysis.snapshot_io import snapshot_from_dict
from memsoak.agent import forked, tracing
from memsoak.agent.middleware import Agent
from memsoak.agent_client import AgentClient, AgentError
from memsoak.target import TargetProcess

TOKEN = "forked-snapshot-token"
Hold = Callable[[object, str], Callable[[], object]]  # the hold_in_child fixture

pytestmark = pytest.mark.skipif(not forked.available(), reason="forked snapshots are Linux only")


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start(5)
    yield
    tracemalloc.stop()


@pytest.fixture
def serve_agent() -> Iterator[Callable[..., str]]:
    """Agents served on loopback ports by wsgiref, each request in its own thread."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIServer

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    servers = []

    def serve(agent: Agent) -> str:
        server = make_server("127.0.0.1", 0, agent, server_class=Server, handler_class=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hold_in_child(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hold]:
    """hold_in_child(owner, name) makes `owner.name` wait for a byte on a pipe the test holds
    before it runs: only a forked child calls it, so the child waits there for the test. It
    returns the release; the pipes are closed after the test."""
    ends: list[int] = []

    def hold(owner: object, name: str) -> Callable[[], object]:
        read_end, write_end = os.pipe()
        ends.extend((read_end, write_end))
        real = getattr(owner, name)

        def held(*args: Any, **kwargs: Any) -> Any:
            os.read(read_end, 1)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, held)
        return lambda: os.write(write_end, b"x")

    yield hold
    for end in ends:
        os.close(end)


def _forked_document(min_site_bytes: int = 0) -> dict[str, Any]:
    snapshot = forked.ForkedSnapshot(min_site_bytes, 1 << 30)
    try:
        return dict(json.loads(b"".join(snapshot.document())))
    finally:
        snapshot.close()


def _by_code(snapshot: Snapshot, code: str) -> list[tuple[Traceback, int, int]]:
    return [(tb, stat.size, stat.count) for tb, stat in snapshot.sites.items() if tb[-1].code == code]


def test_the_child_sends_what_an_in_process_snapshot_sees(traced: None) -> None:
    keep = [bytearray(50_000) for _ in range(4)]  # noqa: F841 - alive in both snapshots
    in_process = snapshot_from_dict(tracing.take_snapshot(0))
    doc = _forked_document()
    from_child = snapshot_from_dict(doc)
    line = "keep = [bytearray(50_000) for _ in range(4)]  # noqa: F841 - alive in both snapshots"
    assert _by_code(from_child, line) == _by_code(in_process, line) != []
    assert from_child.pid == os.getpid() and from_child.frames_limit == 5
    assert doc["child_s"] >= 0 and doc["duration_s"] >= 0
    # Tracing goes on in the target: the child stopped only its own copy.
    assert tracemalloc.is_tracing()


def test_the_target_learns_the_childs_frame_descriptions(traced: None) -> None:
    doc = _forked_document()
    described = tracing.describe([])
    for file, line, function, code in doc["frames"]:
        assert described[(file, line)] == (function, code)


def test_descriptions_survive_the_handoff_whatever_their_text() -> None:
    saved = dict(tracing._descriptions)
    try:
        tracing._descriptions.clear()
        tracing._descriptions[("/srv/app.py", 1)] = ("known", "x = 1")
        odd_file = "/srv/caf\udce9/\u00e9t\u00e9.py"  # a file name that is not valid UTF-8 on disk
        tracing._descriptions[(odd_file, 7)] = ("A.m.<locals>.f", "s = 'a\0b'  # ünïcode")
        tracing._descriptions[("/srv/empty.py", 3)] = ("<module>", "")
        blob = tracing.descriptions_since(1)
        tracing._descriptions.clear()
        tracing.remember_descriptions(blob)
        assert tracing._descriptions == {
            (odd_file, 7): ("A.m.<locals>.f", "s = 'ab'  # ünïcode"),
            ("/srv/empty.py", 3): ("<module>", ""),
        }
        with pytest.raises(ValueError):
            tracing.remember_descriptions(b"a\0b\0c")
    finally:
        tracing._descriptions.clear()
        tracing._descriptions.update(saved)


def test_the_target_serves_while_the_child_builds(
    traced: None, hold_in_child: Hold, serve_agent: Callable[..., str]
) -> None:
    """The child waits on a pipe the test holds; meanwhile the target answers a request, and the
    client already knows the state is taken."""
    release = hold_in_child(tracing, "snapshot_document")
    url = serve_agent(Agent(_app, token=TOKEN))
    client = AgentClient(url, TOKEN, timeout=120)
    taken = threading.Event()
    answered: list[dict[str, Any]] = []

    def snapshot() -> None:
        answered.append(client.snapshot(0, on_taken=taken.set))

    worker = threading.Thread(target=snapshot)
    worker.start()
    try:
        assert taken.wait(60), "the agent never said the state was taken"
        assert client.status()["tracing"] is True  # served while the child is held
        assert answered == []
    finally:
        release()
        worker.join(120)
    assert len(answered) == 1 and answered[0]["format"] == "memsoak-snapshot"


def _child_dies(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
    os._exit(3)


def test_a_dead_child_is_a_clear_error_both_ways(
    traced: None, monkeypatch: pytest.MonkeyPatch, serve_agent: Callable[..., str]
) -> None:
    monkeypatch.setattr(tracing, "snapshot_document", _child_dies)
    client = AgentClient(serve_agent(Agent(_app, token=TOKEN)), TOKEN, timeout=60)
    with pytest.raises(AgentError, match="HTTP 500"):
        client.snapshot(0)
    with pytest.raises(AgentError, match="child died before it finished"):
        client.snapshot(0, on_taken=lambda: None)


def test_a_document_over_the_limit_is_refused_both_ways(
    traced: None, serve_agent: Callable[..., str]
) -> None:
    client = AgentClient(serve_agent(Agent(_app, token=TOKEN, max_response_bytes=1000)), TOKEN, timeout=60)
    with pytest.raises(AgentError, match="HTTP 507"):
        client.snapshot(0)
    with pytest.raises(AgentError, match="over the limit of 1000; ask for a larger min_site_bytes"):
        client.snapshot(0, on_taken=lambda: None)


def _app_growth(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """Growth per allocating line between two snapshots, leaving out the agent's own files."""

    def per_line(snapshot: Snapshot) -> dict[str, int]:
        lines: dict[str, int] = {}
        for traceback, stat in snapshot.sites.items():
            if any(frame.file in snapshot.harness_files for frame in traceback):
                continue
            key = f"{traceback[-1].file}:{traceback[-1].line}"
            lines[key] = lines.get(key, 0) + stat.size
        return lines

    old, new = per_line(before), per_line(after)
    return {line: size - old.get(line, 0) for line, size in new.items() if size - old.get(line, 0) > 0}


@pytest.mark.parametrize("frames", [1, 10])
def test_the_handoff_leaves_nothing_the_next_snapshot_counts(
    start_target: Callable[..., TargetProcess], token: str, frames: int
) -> None:
    """Back-to-back snapshots of an idle target traced since its start: what the first child
    handed back (its frame descriptions, the streamed document) is not growth in the second."""
    target = start_target("targets.seed_fixed.app:app", frames=frames)
    client = AgentClient(target.url, token, timeout=120)
    snapshots = [snapshot_from_dict(client.snapshot(0, on_taken=lambda: None)) for _ in range(3)]
    growth = _app_growth(snapshots[1], snapshots[2])
    assert sum(growth.values()) < 4096, sorted(growth.items(), key=lambda item: -item[1])[:5]
    first_growth = _app_growth(snapshots[0], snapshots[1])
    assert sum(first_growth.values()) < 64 * 1024, sorted(first_growth.items(), key=lambda item: -item[1])[:5]


def test_without_a_fork_the_snapshot_is_taken_in_process(
    traced: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")  # fork's EAGAIN: a process limit

    monkeypatch.setattr(forked, "_unpatched", lambda name: no_fork if name == "fork" else getattr(os, name))
    opened: list[int] = []  # the pipe ends the agent opened, and the descriptors it closed
    closed: list[int] = []
    real_pipe, real_close = os.pipe, os.close
    this_thread = threading.get_ident()  # threads other tests left running may open pipes too

    def recorded_pipe() -> tuple[int, int]:
        ends = real_pipe()
        if threading.get_ident() == this_thread:
            opened.extend(ends)
        return ends

    def recorded_close(fd: int) -> None:
        if threading.get_ident() == this_thread:
            closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(os, "pipe", recorded_pipe)
    monkeypatch.setattr(os, "close", recorded_close)
    client = Agent(_app, token=TOKEN)
    seen: dict[str, str] = {}
    body = b"".join(
        client(
            {"REQUEST_METHOD": "POST", "PATH_INFO": "/__memsoak__/snapshot", "REMOTE_ADDR": "127.0.0.1",
             "HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "CONTENT_LENGTH": "0", "wsgi.input": None},
            lambda status, headers: seen.update(status=status),
        )
    )  # fmt: skip
    doc = json.loads(body)
    assert seen["status"] == "200 OK" and "child_s" not in doc
    assert snapshot_from_dict(doc).pid == os.getpid()
    assert len(opened) == 2 and set(opened) <= set(closed)  # the pipe went with the failed fork


def test_a_client_gone_mid_answer_ends_the_child(traced: None, hold_in_child: Hold) -> None:
    """WSGI servers close the body however the response ended: a client that leaves after the
    announcement (its own timeout, say) leaves no child behind, even one that is still working."""
    import psutil

    hold_in_child(tracing, "snapshot_document")  # never released: the child works until it is ended
    agent = Agent(_app, token=TOKEN)
    body = json.dumps({"announce": True}).encode()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/__memsoak__/snapshot", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }  # fmt: skip
    answer = agent(environ, lambda status, headers: None)
    try:
        assert next(iter(answer)) == b"\n"
        children = psutil.Process().children()
        assert len(children) == 1 and children[0].status() != psutil.STATUS_ZOMBIE
    finally:
        answer.close()  # type: ignore[attr-defined]
    assert psutil.Process().children() == []  # killed and reaped, not a zombie


# -- the retention search in a forked child ------------------------------------------------------

_KEPT: list[bytearray] = []  # a module global: the root the search must name


def _keep_some() -> None:
    _KEPT.extend(bytearray(1_000) for _ in range(300))  # the suspect's line


def _retention_suspect() -> list[dict[str, Any]]:
    code = _keep_some.__code__
    line = code.co_firstlineno + 1
    return [{"traceback": [[code.co_filename, line]], "live_bytes": 300 * 1_000}]


def test_a_forked_retention_search_answers_as_the_in_process_one(
    monkeypatch: pytest.MonkeyPatch, serve_agent: Callable[..., str]
) -> None:
    from memsoak.agent.retention import find_retention

    tracemalloc.start(1)
    try:
        _keep_some()
        client = AgentClient(serve_agent(Agent(_app, token=TOKEN)), TOKEN, timeout=60)
        in_process = find_retention(_retention_suspect(), max_seconds=30)

        def searched_where(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return {**find_retention(*args, **kwargs), "pid": os.getpid()}

        monkeypatch.setattr("memsoak.agent.retention.find_retention", searched_where)
        forked_answer = client.retention(_retention_suspect(), max_seconds=30, fork=True)
        assert forked_answer["pid"] != os.getpid()  # a child's answer
    finally:
        tracemalloc.stop()
        _KEPT.clear()
    [mine], [theirs] = in_process["suspects"], forked_answer["suspects"]
    assert theirs["found"] is True and theirs["method"] == "items"
    assert theirs["root"] == f"module {__name__}" and theirs["steps"][0].startswith("global _KEPT")
    assert theirs == mine


def test_the_target_serves_while_a_forked_search_runs(
    hold_in_child: Hold, serve_agent: Callable[..., str]
) -> None:
    from memsoak.agent import retention

    release = hold_in_child(retention, "find_retention")
    tracemalloc.start(1)
    client = AgentClient(serve_agent(Agent(_app, token=TOKEN)), TOKEN, timeout=120)
    answered: list[dict[str, Any]] = []
    suspects = _retention_suspect()
    worker = threading.Thread(target=lambda: answered.append(client.retention(suspects, fork=True)))
    worker.start()
    try:
        import psutil

        deadline = 60.0
        while not psutil.Process().children() and deadline > 0:
            threading.Event().wait(0.05)
            deadline -= 0.05
        assert psutil.Process().children(), "no child searching"
        assert client.status()["tracing"] is True  # served while the child is held
        assert answered == []
    finally:
        release()
        worker.join(120)
        tracemalloc.stop()
    assert len(answered) == 1 and "suspects" in answered[0]


def test_a_forked_search_is_asked_for_with_a_boolean(serve_agent: Callable[..., str]) -> None:
    client = AgentClient(serve_agent(Agent(_app, token=TOKEN)), TOKEN, timeout=60)
    body = {"suspects": _retention_suspect(), "fork": "yes"}
    with pytest.raises(AgentError, match="HTTP 400"):
        client._json("POST", "retention", body)


def test_a_forked_search_without_tracing_is_refused_as_in_process(serve_agent: Callable[..., str]) -> None:
    assert not tracemalloc.is_tracing()
    client = AgentClient(serve_agent(Agent(_app, token=TOKEN)), TOKEN, timeout=60)
    for fork in (True, False):
        with pytest.raises(AgentError, match="HTTP 409"):
            client.retention(_retention_suspect(), fork=fork)


def test_a_child_that_fails_says_why_in_the_targets_log(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from memsoak.agent import retention

    def broken(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise KeyError("a bug in the search")

    monkeypatch.setattr(retention, "find_retention", broken)
    tracemalloc.start(1)
    try:
        search = forked.ForkedRetention(_retention_suspect(), 10.0)
        try:
            with pytest.raises(forked.ChildFailed, match="retention search child died"):
                b"".join(search.document())
        finally:
            search.close()
    finally:
        tracemalloc.stop()
    err = capfd.readouterr().err
    assert "memsoak: forked child failed" in err and "KeyError: 'a bug in the search'" in err
