"""Bad input: every loader of external data, fuzzed with hypothesis. Malformed input gives one
clear error of the loader's own type, never another exception (a traceback) or a hang. And
memsoak never unpickles anything.

Loaders: snapshot JSON (analysis.snapshot_io), report JSON (analysis.report_io), run.json
(memsoak.rundir, through `memsoak report`), and the agent's responses (memsoak.agent_client,
both its parsers and a real client against a server that answers garbage).
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.model import Frame, RequestCounts, RunData, Sample, SiteStat, Snapshot, WorkerMemory
from analysis.report import build_report
from analysis.report_io import ReportFormatError, loads_report, report_from_dict
from analysis.snapshot_io import SnapshotFormatError, loads_snapshot, snapshot_from_dict, snapshot_to_dict
from analysis.writers.json_report import report_to_dict
from memsoak import cli
from memsoak.agent_client import AgentClient, AgentError, AgentTimeout, check_status, parse_response
from memsoak.rundir import RUN_FILE, SNAPSHOT_DIR, RunDir, RunDirError

REPO = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2**63, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def mutate(doc: Any, data: st.DataObject, depth: int = 0) -> Any:
    """A copy of `doc` with one place, chosen by hypothesis, replaced, deleted or retyped."""
    if depth > 6 or not isinstance(doc, dict | list) or not doc or data.draw(st.integers(0, 4)) == 0:
        return data.draw(json_values)
    doc = copy.copy(doc)
    if isinstance(doc, dict):
        key = data.draw(st.sampled_from(sorted(doc)))
        if data.draw(st.integers(0, 5)) == 0:
            del doc[key]
        else:
            doc[key] = mutate(doc[key], data, depth + 1)
    else:
        index = data.draw(st.integers(0, len(doc) - 1))
        doc[index] = mutate(doc[index], data, depth + 1)
    return doc


# -- fixtures: valid documents to start from -------------------------------------------------


def _snapshot(requests: int, leaked: int) -> Snapshot:
    app = Frame("/srv/app/views.py", 10, "index", "cache.append(x)")
    lib = Frame("/usr/lib/python3/json/decoder.py", 353, "raw_decode", "obj, end = ...")
    return Snapshot(
        pid=42,
        taken_at=1_700_000_000.0 + requests,
        requests=requests,
        rss_bytes=50_000_000 + leaked,
        traced_bytes=8_000_000 + leaked,
        tracemalloc_overhead_bytes=1_000_000,
        frames_limit=10,
        duration_s=0.5,
        sites={(app,): SiteStat(leaked, requests), (app, lib): SiteStat(4096, 3)},
        harness_files=("/srv/memsoak/agent/",),
        library_files=("/usr/lib/python3/",),
    )


def _merged(requests: int, leaked: int) -> Snapshot:
    """Two workers, the leak mostly in the second (a multi-worker target's merged snapshot)."""
    one = _snapshot(requests, leaked)
    sites = {
        traceback: SiteStat(stat.size, stat.count, (stat.size // 4, stat.size - stat.size // 4))
        for traceback, stat in one.sites.items()
    }
    workers = (
        WorkerMemory(41, 1000, 500, requests // 4),
        WorkerMemory(43, 3000, 1500, requests - requests // 4),
    )
    return replace(one, sites=sites, workers=workers)


SNAPSHOTS = [_snapshot(0, 1000), _snapshot(500, 500_000), _snapshot(1000, 1_000_000)]
VALID_SNAPSHOT = snapshot_to_dict(SNAPSHOTS[1])
MERGED = [_merged(0, 1000), _merged(1000, 1_000_000)]
VALID_MERGED = snapshot_to_dict(MERGED[1])
RUN = RunData(
    snapshots=SNAPSHOTS,
    samples=[Sample(r, r / 100, 50_000_000 + r * 1000, 8_000_000 + r * 1000) for r in range(0, 1001, 100)],
    requests=RequestCounts(100, 1000, 0),
    parameters={"requests": 1000},
    events=["12:00:00 test started"],
)
VALID_REPORT = json.loads(json.dumps(report_to_dict(build_report(RUN)), default=str))


def write_run_dir(path: Path, state: Any) -> None:
    (path / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
    for index, snapshot in enumerate(SNAPSHOTS):
        (path / SNAPSHOT_DIR / f"{index:03d}-checkpoint.json").write_text(
            json.dumps(snapshot_to_dict(snapshot))
        )
    (path / RUN_FILE).write_text(json.dumps(state))


def valid_state() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        RunDir(tmp).save_state(RUN, "finished")
        state: dict[str, Any] = json.loads((Path(tmp) / RUN_FILE).read_text())
    return state


VALID_STATE = valid_state()


# -- snapshot JSON ---------------------------------------------------------------------------


def test_valid_documents_load() -> None:
    assert snapshot_from_dict(VALID_SNAPSHOT) == SNAPSHOTS[1]
    assert report_from_dict(VALID_REPORT)["verdict"] == "leak"


@FUZZ
@given(st.binary(max_size=2000))
def test_snapshot_loader_on_arbitrary_bytes(data: bytes) -> None:
    try:
        loads_snapshot(data)
    except SnapshotFormatError:
        pass


@FUZZ
@given(json_values)
def test_snapshot_loader_on_arbitrary_json(value: Any) -> None:
    try:
        loads_snapshot(json.dumps(value))
    except SnapshotFormatError:
        pass


@FUZZ
@given(st.data())
def test_snapshot_loader_on_damaged_snapshots(data: st.DataObject) -> None:
    doc = mutate(VALID_SNAPSHOT, data)
    try:
        snapshot = loads_snapshot(json.dumps(doc))
    except SnapshotFormatError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300
        return
    # Whatever loads, the analysis can use.
    build_report(RunData([SNAPSHOTS[0], snapshot], [], RequestCounts(0, 500, 0)))


@FUZZ
@given(st.data())
def test_snapshot_loader_on_damaged_merged_snapshots(data: st.DataObject) -> None:
    """The per-worker parts of a merged snapshot (`workers`, `site_workers`) too."""
    doc = copy.deepcopy(VALID_MERGED)
    key = data.draw(st.sampled_from(["workers", "site_workers", "sites"]))
    doc[key] = mutate(doc[key], data)
    try:
        snapshot = loads_snapshot(json.dumps(doc))
    except SnapshotFormatError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300
        return
    report = build_report(RunData([MERGED[0], snapshot], [], RequestCounts(0, 1000, 0)))
    report_to_dict(report)


def test_valid_merged_snapshot_loads_with_its_worker_suspects() -> None:
    assert snapshot_from_dict(VALID_MERGED) == MERGED[1]
    report = build_report(RunData(list(MERGED), [], RequestCounts(0, 1000, 0)))
    assert [round(row.suspects[0].share, 2) for row in report.workers] == [0.25, 0.75]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # past the JSON parser's recursion limit
        '{"format": "memsoak-snapshot", "version": 1, "pid": ' + "9" * 10_000 + "}",  # int too long to parse
        '{"format": "memsoak-snapshot", "version": 1, "taken_at": ' + "1" * 400 + "}",
        "\ufeff{}",
        "",
    ],
)
def test_snapshot_loader_pathological_inputs(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(SnapshotFormatError):
        loads_snapshot(text)
    assert time.monotonic() - started < 30  # bounded: no hang


# -- report JSON -----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000))
def test_report_loader_on_arbitrary_bytes(data: bytes) -> None:
    try:
        loads_report(data)
    except ReportFormatError:
        pass


@FUZZ
@given(st.data())
def test_report_loader_on_damaged_reports(data: st.DataObject) -> None:
    doc = mutate(VALID_REPORT, data)
    try:
        loaded = loads_report(json.dumps(doc))
    except ReportFormatError as exc:
        assert "\n" not in str(exc)
        return
    assert loaded["verdict"] in ("leak", "no-leak", "native-leak", "inconclusive")


def test_report_loader_reads_what_memsoak_writes(tmp_path: Path) -> None:
    write_run_dir(tmp_path, VALID_STATE)
    assert cli.main(["report", str(tmp_path)]) == 0
    report = loads_report((tmp_path / "report.json").read_bytes())
    assert report["verdict"] == "leak" and report["suspects"][0]["file"] == "/srv/app/views.py"


# -- run.json, through `memsoak report` ------------------------------------------------------


def report_command(path: Path) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = cli.main(["report", str(path)])
    return code, err.getvalue()


@FUZZ
@given(st.data())
def test_report_command_on_damaged_run_json(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = mutate(VALID_STATE, data)
        write_run_dir(Path(tmp), state)
        code, stderr = report_command(Path(tmp))
    assert code in (0, 2)
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("memsoak: error: "), stderr
        assert "is malformed" in lines[0]


@FUZZ
@given(st.binary(max_size=500) | json_values.map(lambda v: json.dumps(v).encode()))
def test_report_command_on_arbitrary_run_json(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_run_dir(Path(tmp), {})
        (Path(tmp) / RUN_FILE).write_bytes(content)
        code, stderr = report_command(Path(tmp))
    assert code in (0, 2)
    if code == 2:
        assert len(stderr.strip().splitlines()) == 1, stderr


@FUZZ
@given(st.data())
def test_report_command_on_a_damaged_snapshot_file(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_run_dir(Path(tmp), VALID_STATE)
        (Path(tmp) / SNAPSHOT_DIR / "001-checkpoint.json").write_text(
            json.dumps(mutate(VALID_SNAPSHOT, data))
        )
        code, stderr = report_command(Path(tmp))
    assert code in (0, 2)
    if code == 2:
        assert len(stderr.strip().splitlines()) == 1 and "001-checkpoint.json" in stderr


def test_report_command_on_missing_and_unreadable_run_dirs(tmp_path: Path) -> None:
    assert report_command(tmp_path / "nope") == (
        2,
        f"memsoak: error: {tmp_path / 'nope'} is not a memsoak run directory (no run.json)\n",
    )
    (tmp_path / RUN_FILE).mkdir()  # a directory where the file should be
    code, stderr = report_command(tmp_path)
    assert code == 2 and stderr.startswith("memsoak: error: cannot read")


# -- the agent's responses -------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode()))
def test_agent_response_parsers(payload: bytes) -> None:
    try:
        doc = parse_response("status", payload)
    except AgentError:
        return
    try:
        status = check_status(doc)
    except AgentError:
        pass
    else:
        assert all(type(status[k]) is int for k in ("pid", "rss_bytes", "traced_bytes"))
    # A snapshot response goes through the snapshot validation before anything keeps it.
    with tempfile.TemporaryDirectory() as tmp:
        try:
            RunDir(tmp).prepare().save_snapshot(doc, 0, "fuzz")
        except SnapshotFormatError:
            pass


class GarbageServer:
    """Answers each connection with the next queued bytes (or nothing, to time out), then closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.replies: list[bytes | None] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    reply = self.replies.pop(0) if self.replies else b""
                    if reply is None:
                        self.stop.wait(3)  # say nothing
                    else:
                        conn.sendall(reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def garbage() -> Iterator[GarbageServer]:
    server = GarbageServer()
    yield server
    server.close()


def _http(body: bytes, status: str = "200 OK", headers: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Length: %d\r\n" % len(body) + headers + b"\r\n" + body
    )


GARBAGE = [
    b"",
    b"\x00\xff" * 100,
    b"not http at all\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",  # cut short
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n",
    _http(b"<html>not json</html>"),
    _http(b"[1, 2, 3]"),
    _http(b"[" * 50_000),
    _http(b"{}"),  # JSON, but no pid/rss_bytes/traced_bytes
    _http(b'{"pid": -1, "rss_bytes": 1, "traced_bytes": 1}'),
    _http(b'{"pid": true, "rss_bytes": 1, "traced_bytes": 1}'),
    _http(b'{"error": "x"}', "500 Internal Server Error"),
    _http(b"{}", "999 Weird"),
    _http(b"{}", "302 Found", b"Location: http://127.0.0.1:1/\r\n"),
]


@pytest.mark.parametrize("reply", GARBAGE, ids=range(len(GARBAGE)))
def test_client_against_a_garbage_server(garbage: GarbageServer, reply: bytes) -> None:
    garbage.replies.append(reply)
    started = time.monotonic()
    with pytest.raises(AgentError) as caught:
        AgentClient(garbage.url, "token", timeout=5).status()
    assert "\n" not in str(caught.value) and len(str(caught.value)) <= 300
    assert time.monotonic() - started < 30


def test_client_against_a_silent_server(garbage: GarbageServer) -> None:
    garbage.replies.append(None)
    with pytest.raises(AgentTimeout, match="did not answer status within 1 s"):
        AgentClient(garbage.url, "token", timeout=1).status()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000))
def test_client_against_random_bytes(garbage: GarbageServer, reply: bytes) -> None:
    garbage.replies.append(reply)
    try:
        AgentClient(garbage.url, "token", timeout=5).snapshot()
    except AgentError:
        pass


# -- no unpickling, ever ---------------------------------------------------------------------

SOURCE_DIRS = ("memsoak", "analysis", "locustfiles", "targets", "bench")
UNSAFE = re.compile(
    r"^\s*(?:import|from)\s+(?:c?pickle|_pickle|marshal|shelve|dill|cloudpickle|joblib|jsonpickle)\b"
    r"|\b(?:pickle|marshal|shelve|dill|cloudpickle|joblib)\.(?:loads?|open|Unpickler)\b"
    r"|\byaml\.(?:unsafe_)?load\(|__reduce(?:_ex)?__|\beval\(|\bexec\(",
    re.MULTILINE,
)


def test_source_never_unpickles() -> None:
    hits = []
    for directory in SOURCE_DIRS:
        for path in sorted((REPO / directory).rglob("*.py")):
            for match in UNSAFE.finditer(path.read_text(encoding="utf-8")):
                hits.append(f"{path.relative_to(REPO)}: {match.group(0).strip()}")
    assert hits == []


class _Boom:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned",))


PICKLES = [pickle.dumps(_Boom(), protocol=p) for p in (0, 2, 5)] + [
    pickle.dumps({"format": "memsoak-snapshot"})
]
_unpickled: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class":
        _unpickled.append(repr(args))


def test_loaders_refuse_pickles_without_unpickling(tmp_path: Path) -> None:
    sys.addaudithook(_audit)  # permanent, but it only records pickle.find_class
    _unpickled.clear()
    for payload in PICKLES:
        with pytest.raises(SnapshotFormatError):
            loads_snapshot(payload)
        with pytest.raises(ReportFormatError):
            loads_report(payload)
        with pytest.raises(AgentError):
            parse_response("snapshot", payload)
        write_run_dir(tmp_path, {})
        (tmp_path / RUN_FILE).write_bytes(payload)
        with pytest.raises(RunDirError):
            RunDir(tmp_path).load()
        (tmp_path / RUN_FILE).write_text(json.dumps(VALID_STATE))
        (tmp_path / SNAPSHOT_DIR / "000-checkpoint.json").write_bytes(payload)
        with pytest.raises(RunDirError):
            RunDir(tmp_path).load()
    # The hook works (a real unpickle is seen), and none of the loaders unpickled anything.
    assert _unpickled == []
    with pytest.raises(AttributeError):
        pickle.loads(pickle.dumps(_Boom()).replace(b"system", b"nosuch"))
    assert _unpickled != []


SITECUSTOMIZE = """
import os, pickle, sys
_log = os.environ["MEMSOAK_TEST_PICKLE_LOG"]
def _note(what):
    with open(_log, "a") as f:
        f.write(f"{os.getpid()} {what}\\n")
_note("watching " + " ".join(sys.argv[:3]))
def _refuse(name, real):
    def wrapper(*args, **kwargs):
        _note(f"CALLED {name}")
        return real(*args, **kwargs)
    return wrapper
pickle.loads = _refuse("pickle.loads", pickle.loads)
pickle.load = _refuse("pickle.load", pickle.load)
class _Unpickler(pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        _note("CALLED pickle.Unpickler")
        super().__init__(*args, **kwargs)
pickle.Unpickler = _Unpickler
def _audit(event, args):
    if event == "pickle.find_class":
        _note(f"CALLED find_class {args}")
sys.addaudithook(_audit)
"""


def test_a_whole_run_never_unpickles(tmp_path: Path) -> None:
    """memsoak run, its Locust child and the target, each watched for any unpickling."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "pickle.log"
    result = subprocess.run(
        [sys.executable, "-m", "memsoak", "run", "--app", "targets.seed_leak.app:app", "--requests", "300",
         "--warmup", "20", "--checkpoints", "2", "--users", "2", "--out", str(tmp_path / "out")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{hooks}:{REPO}", "MEMSOAK_TEST_PICKLE_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    watched = " ".join(lines)
    # At sitecustomize time argv[0] is still "-m": told apart by their arguments.
    assert "-m run --app" in watched  # memsoak run
    assert "seed_leak.app:app --bind" in watched  # the target (memsoak.serve)
    assert "-m -f " in watched and "locustfiles/seed.py" in watched  # Locust
    assert [line for line in lines if "CALLED" in line] == []
    # The run itself used what it read back: a verdict came out of JSON alone.
    assert json.loads((tmp_path / "out" / "report.json").read_text())["verdict"] == "leak"
