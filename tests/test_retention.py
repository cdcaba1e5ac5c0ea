"""Retention kinds on this process's own heap (the agent's search), and one finding per root (the
analysis): a registry inside a class, objects with a reference leaked through the C API, memory
taken from Python's allocator with no object, a leaked traceback keeping its frames."""

from __future__ import annotations

import ctypes
import gc
import io
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from analysis.model import Frame, RequestCounts, RunData
from analysis.report import build_report
from analysis.writers import html, json_report, markdown
from memsoak.agent.retention import find_retention
from memsoak.progress import summary_doc
from memsoak.summary import summary_lines
from targets.cext import load
from tests.test_verdict import LIB, REQUESTS, series

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_decref = ctypes.pythonapi.Py_DecRef
_decref.argtypes = [ctypes.py_object]
rawleak = load("rawleak")  # tests/cext/rawleak.c


class Session:
    def __init__(self, n: int) -> None:
        self.n = n
        self.payload = [n] * 20


class Manager:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}


class Registry:
    manager: ClassVar[Manager] = Manager()


def _open(n: int) -> None:
    Registry.manager.sessions[f"s{n}"] = Session(n)  # a registry's item


def _leak(n: int) -> Session:
    leaked = Session(n)  # a reference C code keeps
    _incref(leaked)
    return leaked


def _raw(size: int) -> None:
    rawleak.leak(size)  # memory with no object


def _where(function: Any, marker: str) -> tuple[str, int]:
    code = function.__code__
    lines = open(code.co_filename, encoding="utf-8").read().splitlines()
    start = code.co_firstlineno
    line = next(n for n in range(start, start + 10) if marker in lines[n - 1])
    return code.co_filename, line


def _suspect(function: Any, marker: str) -> dict[str, Any]:
    """The traceback tracemalloc gives the line: this test's frames, outermost first, then the
    caller's line and the line itself (the search compares whole tracebacks)."""
    found = [s for s in _snapshot_sites() if s[-1] == _where(function, marker)]
    assert found, (
        f"nothing traced at {_where(function, marker)} (tracing: {tracemalloc.is_tracing()}, "
        f"{tracemalloc.get_traceback_limit()} frames, {len(_sites)} sites)"
    )
    return {"traceback": [list(frame) for frame in found[0]], "live_bytes": 1}


_sites: list[tuple[tuple[str, int], ...]] = []


def _snapshot_sites() -> list[tuple[tuple[str, int], ...]]:
    if not _sites:
        snapshot = tracemalloc.take_snapshot()
        _sites.extend(
            tuple((f.filename, f.lineno) for f in stat.traceback) for stat in snapshot.statistics("traceback")
        )
    return _sites


@pytest.fixture
def traced() -> Iterator[None]:
    # An in-process Locust test froze this process's objects at its quit (the plugin's exit
    # speed-up): the search sees no frozen object's references outside a forked child.
    gc.unfreeze()
    if tracemalloc.is_tracing():  # started by something else, perhaps at another depth
        tracemalloc.stop()
    tracemalloc.start(8)
    _sites.clear()
    try:
        yield
    finally:
        tracemalloc.stop()
        _sites.clear()
        Registry.manager.sessions.clear()


def test_a_registry_in_a_class_is_reachable_and_named_as_written(traced: None) -> None:
    for n in range(300):
        _open(n)
    answer = find_retention([_suspect(_open, "registry's item")], max_seconds=30)
    (found,) = answer["suspects"]
    assert found["kind"] == "reachable" and found["found"] is True
    assert found["root"] == f"class {__name__}.Registry"
    assert found["holder"] == "Registry.manager.sessions (dict of 300 Session)"
    assert found["created_at"][-1][:3] == [*_where(_open, "registry's item"), "_open"]


def test_objects_a_leaked_reference_keeps_are_unreachable(traced: None) -> None:
    leaked = [_leak(n) for n in range(200)]
    ids = [id(s) for s in leaked]
    del leaked
    gc.collect()
    try:
        answer = find_retention([_suspect(_leak, "C code keeps")], max_seconds=30)
    finally:
        for obj in gc.get_objects():  # the test's own leak, released
            if id(obj) in ids:
                _decref(obj)
    (found,) = answer["suspects"]
    assert found["kind"] == "unreachable", found
    assert found["root"] == f"unreferenced {__name__}.Session"
    assert "reference leaked by C code" in found["note"]
    assert found["created_at"][-1][:2] == list(_where(_leak, "C code keeps"))
    assert found["group"] and found["holder"] == ""


def test_memory_with_no_object_is_raw(traced: None) -> None:
    for _ in range(50):
        _raw(4096)
    try:
        answer = find_retention([_suspect(_raw, "no object")], max_seconds=30)
    finally:
        rawleak.release()
    (found,) = answer["suspects"]
    assert found["kind"] == "raw" and found["found"] is False, found
    assert "no Python object" in found["note"] and found["group"] is None


class Loop:
    """An event loop's shape: items scheduled on it, and a method running in a call in progress."""

    def __init__(self) -> None:
        self.scheduled: list[Session] = []

    def schedule(self, n: int) -> None:
        self.scheduled.append(Session(n))  # a scheduled item

    def search(self, suspect: dict[str, Any]) -> dict[str, Any]:
        return find_retention([suspect], max_seconds=30)


def test_kept_by_a_running_functions_local_through_a_call_in_progress_is_reachable(traced: None) -> None:
    """The way up from the items passes the loop (a running function's local), then the bound
    method `map` calls and the map object, which only the C stack holds: no reference leaked by
    C code, but the running function's local (asyncio's loop in `run_forever`, under uvicorn)."""
    loop = Loop()
    for n in range(300):
        loop.schedule(n)
    (answer,) = list(map(loop.search, [_suspect(Loop.schedule, "a scheduled item")]))
    (found,) = answer["suspects"]
    assert found["kind"] == "reachable", found
    assert found["root"].startswith("a local of running function "), found["root"]
    assert "unreferenced" not in found["root"] and "C code" not in found.get("note", "")
    assert found["steps"][0].startswith("local self") or found["steps"][0].startswith("local loop"), found


def _failing(n: int) -> None:
    request = {"path": f"/item/{n}", "headers": [("x-request", str(n))] * 8}  # the request's locals
    raise ValueError(request["path"])


def _serve(n: int) -> None:
    try:
        _failing(n)
    except ValueError as exc:
        _incref(exc.__traceback__)  # the extension's missing DECREF


def test_a_leaked_traceback_keeps_its_frames_and_their_locals(traced: None) -> None:
    for n in range(100):
        _serve(n)
    gc.collect()
    answer = find_retention([_suspect(_failing, "the request's locals")], max_seconds=30)
    (found,) = answer["suspects"]
    assert found["kind"] == "unreachable", found
    assert found["root"] == "unreferenced traceback"
    assert found["steps"][0].startswith("tb_frame") or found["steps"][0].startswith("tb_next")
    # The traceback was made where the exception entered the caller's frame: the call.
    assert found["created_at"][-1][:2] == list(_where(_serve, "_failing(n)"))


# -- one finding per root, from the agent's answers ----------------------------------------------

REG = (Frame("/srv/app/views.py", 20, "index", "log = logging.getLogger(name)"),)
MADE = (*REG, Frame(f"{LIB}logging/__init__.py", 1353, "getLogger", "rv = Logger(name)"))
CACHE = (
    Frame("/srv/app/views.py", 21, "index", "log.debug(x)"),
    Frame(f"{LIB}logging/__init__.py", 1749, "", ""),
)
SEED = (Frame("/srv/app/other.py", 5, "f", "cache.append(x)"),)


def _answer(site: tuple[Frame, ...], **fields: Any) -> dict[str, Any]:
    held = {"type": "dict", "length": 9, "size": 9}
    return {"traceback": [[f.file, f.line] for f in site], "method": "items", "root": "class logging.Logger",
            "steps": [], "held": held, "objects": 0, **fields}  # fmt: skip


def test_suspects_one_root_keeps_are_one_finding_blamed_where_the_root_was_made() -> None:
    sites = {
        CACHE: [r * 160 for r in REQUESTS],
        MADE: [r * 150 for r in REQUESTS],
        SEED: [r * 100 for r in REQUESTS],
    }
    run = RunData(snapshots=series(REQUESTS, sites), samples=[], requests=RequestCounts(100, 2000, 0))
    holder = "logging.Logger.manager.loggerDict (dict of 2,000 Logger)"
    made = [[f.file, f.line, f.function, f.code] for f in MADE]
    run.retention = [
        _answer(CACHE, kind="reachable", found=True, holder=holder, group="holder 1", created_at=made),
        _answer(MADE, kind="reachable", found=True, holder=holder, group="holder 1", created_at=made),
        _answer(SEED, kind="raw", found=False, group=None, created_at=[]),
    ]
    report = build_report(run)
    top, other = report.suspects
    assert (top.file, top.line) == (MADE[-1].file, MADE[-1].line) and top.user_frame == REG[0]
    assert top.bytes_per_request == pytest.approx(310)
    assert [(m.line, round(m.bytes_per_request)) for m in top.members] == [(1749, 160), (1353, 150)]
    assert top.retention is not None and top.retention.created_at == REG[0]
    assert other.retention is not None and other.retention.kind == "raw"
    assert other.retention.created_at == SEED[0]  # the call into the extension
    assert report.verdict.kind == "leak" and "views.py" in report.verdict.explanation
    out = io.StringIO()
    json_report.render(report, out)
    doc = json.loads(out.getvalue())["suspects"]
    assert doc[0]["retention"]["kind"] == "reachable" and doc[0]["retention"]["holder"] == holder
    assert doc[0]["retention"]["created_at"] == {"file": "/srv/app/views.py", "line": 20, "function": "index"}
    assert doc[0]["members"][0] == {"file": CACHE[-1].file, "line": 1749, "bytes_per_request": 160.0}
    assert doc[1]["retention"]["kind"] == "raw" and doc[1]["retention"]["created_at"]["line"] == 5
    text = io.StringIO()
    markdown.render(report, text)
    assert (
        f"reachable: {holder}" in text.getvalue() and "raw: memory with no Python object" in text.getvalue()
    )
    page = io.StringIO()
    html.render(report, page)
    assert 'data-kind="reachable"' in page.getvalue() and 'data-kind="raw"' in page.getvalue()
    terminal = "\n".join(summary_lines(report, []))
    assert f"memsoak: what keeps the top suspect: reachable: {holder}, by class logging.Logger" in terminal
    kept = [s["kept_by"] for s in summary_doc(report, [])["suspects"]]
    assert kept == [f"reachable: {holder}", "raw: memory with no Python object"]


def test_an_unreferenced_root_that_is_no_suspect_still_takes_the_blame() -> None:
    environ = (Frame(f"{LIB}gevent/pywsgi.py", 1291, "get_environ", "env = {}"),)
    raised = (
        Frame("/srv/app/views.py", 40, "index", "decoder.decode(body)"),
        Frame(f"{LIB}json/__init__.py", 346, "loads", ""),
    )
    sites = {environ: [r * 384 for r in REQUESTS]}
    run = RunData(snapshots=series(REQUESTS, sites), samples=[], requests=RequestCounts(100, 2000, 0))
    made = [[f.file, f.line, f.function, f.code] for f in raised]
    run.retention = [_answer(environ, kind="unreachable", found=True, root="unreferenced traceback",
                             group="unreferenced traceback at x", created_at=made)]  # fmt: skip
    (top,) = build_report(run).suspects
    assert (top.file, top.line) == (f"{LIB}json/__init__.py", 346) and top.user_frame == raised[0]
    assert [m.line for m in top.members] == [1291] and top.bytes_per_request == pytest.approx(384)
    assert top.retention is not None and top.retention.summary.startswith("unreachable: ")


def test_frozen_objects_make_no_leak_unreachable_in_the_target(traced: None) -> None:
    for n in range(200):
        _open(n)
    gc.freeze()  # as a preforking server's app does: the registry's owner is frozen now
    try:
        in_target = find_retention([_suspect(_open, "registry's item")], max_seconds=30)
        in_child = find_retention([_suspect(_open, "registry's item")], max_seconds=30, in_child=True)
    finally:
        gc.unfreeze()
    assert in_target["suspects"][0]["kind"] == "unknown"
    assert "frozen (gc.freeze())" in in_target["suspects"][0]["note"]
    assert in_child["suspects"][0]["kind"] == "reachable"  # the child thaws them
