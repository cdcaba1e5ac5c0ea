"""Call paths instead of deep tracing: the agent's profile hook, over real calls, and how the
report gives one-frame suspects the path it saw."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from analysis.call_paths import deepen, origin, read_call_paths
from analysis.model import Frame, RequestCounts, RunData, SiteStat, Snapshot
from analysis.report import Report, build_report
from analysis.writers import json_report, markdown
from memsoak.agent import Agent, callers, tracing
from memsoak.agent.callers import CallerWatch, _callhook

TOKEN = "paths-token"
KEPT: list[bytes] = []


def remember(n: int) -> None:
    KEPT.append(bytes(n))  # the line watched: REMEMBER_LINE


REMEMBER_LINE = remember.__code__.co_firstlineno + 1


@pytest.fixture(autouse=True, params=["c", "setprofile"])
def hook(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test with the C hook, then with the `sys.setprofile` one it falls back to; none left."""
    if request.param == "setprofile":
        monkeypatch.setattr(callers, "_callhook", None)
    else:
        assert callers._callhook is not None, "the C extension is not built: pip install -e ."
    yield request.param
    sys.setprofile(None)
    if _callhook is not None:
        _callhook.stop()
    KEPT.clear()


def _client() -> FlaskClient:
    app = Flask(__name__)

    @app.route("/")
    def index() -> str:
        remember(10)
        return "ok"

    app.wsgi_app = Agent(app.wsgi_app, token=TOKEN)  # type: ignore[method-assign]
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    return client


def _post(client: FlaskClient, name: str, body: object) -> tuple[int, dict[str, object]]:
    response = client.post(f"/__memsoak__/{name}", headers={"Authorization": f"Bearer {TOKEN}"}, json=body)
    return response.status_code, response.json or {}


def test_the_agent_watches_call_paths_to_a_line_over_http() -> None:
    client = _client()
    status, _ = _post(client, "callers/start", {"lines": [[__file__, REMEMBER_LINE]], "depth": 6})
    assert status == 200
    for _ in range(5):
        client.get("/")
    remember(1)  # a second path to the same line
    status, answer = _post(client, "callers/stop", {})
    assert status == 200
    assert sys.getprofile() is None
    [line] = answer["lines"]  # type: ignore[misc]
    assert (line["file"], line["line"], line["calls"]) == (__file__, REMEMBER_LINE, 6)
    first, second = line["paths"]
    assert first["calls"] == 5 and second["calls"] == 1
    frames = first["frames"]
    assert len(frames) == 6
    assert frames[-1][:3] == [__file__, REMEMBER_LINE, "remember"]
    assert frames[-1][3].startswith("KEPT.append(bytes(n))")
    assert frames[-2][2].endswith("index")
    assert second["frames"][-2][2] == "test_the_agent_watches_call_paths_to_a_line_over_http"


def test_callers_refuses_bad_input_and_a_stop_without_a_start() -> None:
    client = _client()
    for body in (
        {},
        {"lines": [], "depth": 5},
        {"lines": [[__file__, "7"]], "depth": 5},
        {"lines": [[__file__, 7]], "depth": 0},
        {"lines": [[__file__, 7]] * 11, "depth": 5},
        {"lines": [[__file__, 7]], "depth": 5, "max_seconds": 3600},
    ):
        assert _post(client, "callers/start", body)[0] == 400, body
    assert sys.getprofile() is None
    assert _post(client, "callers/stop", {})[0] == 409


@pytest.mark.parametrize("hook", ["c"], indirect=True)  # the C hook's own behaviour
def test_the_c_hook_passes_on_only_calls_of_the_watched_files_code(hook: str) -> None:
    assert _callhook is not None
    seen: list[str] = []
    _callhook.start((__file__,), lambda frame: seen.append(frame.f_code.co_name), 1e18)
    json.dumps({"a": [1]})  # the json module's code: not passed on
    remember(1)
    _callhook.stop()
    remember(1)
    assert seen == ["remember"]


@pytest.mark.parametrize("hook", ["c"], indirect=True)  # the C hook's own behaviour
def test_a_callback_that_raises_never_reaches_the_target(hook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _callhook is not None
    reported: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: reported.append(info.exc_value))

    def broken(_frame: object) -> None:
        raise RuntimeError("a bug in the watch")

    _callhook.start((__file__,), broken, 1e18)
    try:
        remember(1)  # runs on, as the target's request would
    finally:
        _callhook.stop()
    assert KEPT and [str(e) for e in reported] == ["a bug in the watch"]


def test_a_forgotten_watch_takes_itself_off() -> None:
    """A harness that dies mid-window must not leave a production process profiled."""
    watch = CallerWatch([(__file__, REMEMBER_LINE)], depth=3, max_seconds=0.0)
    watch.start()
    for _ in range(3000):  # the clock is read every 1,024 profile events
        remember(1)
    assert sys.getprofile() is None and not watch.watching


def _suspect_report(paths: dict[str, object]) -> Report:
    site = (Frame(__file__, REMEMBER_LINE, "remember", "KEPT.append(bytes(n))"),)
    snapshots = [
        Snapshot(
            pid=1, taken_at=float(i), requests=i * 100, rss_bytes=50_000_000 + i * 4_000_000,
            traced_bytes=i * 4_000_000, tracemalloc_overhead_bytes=0, frames_limit=1,
            duration_s=0.0, sites={site: SiteStat(i * 4_000_000, i * 100)},
        )
        for i in range(6)
    ]  # fmt: skip
    return build_report(RunData(snapshots, [], RequestCounts(100, 500, 0, window=100), call_paths=paths))


def test_a_one_frame_suspect_gets_the_path_seen_and_bad_answers_change_nothing() -> None:
    watch = CallerWatch([(__file__, REMEMBER_LINE)], depth=4, max_seconds=60)
    watch.start()
    remember(1)
    watch.stop()
    answer = watch.answer()
    [suspect] = _suspect_report(answer).suspects
    deep = suspect.traceback
    assert suspect.paths_seen == 1 and len(deep) == 4 and deep[-1].line == REMEMBER_LINE
    assert deep[-2].function == "test_a_one_frame_suspect_gets_the_path_seen_and_bad_answers_change_nothing"
    for broken in (
        {},
        {"lines": "x"},
        {"lines": [{"file": __file__, "line": REMEMBER_LINE, "paths": [{"frames": [["f", 1]]}]}]},
        {"lines": [{"file": __file__, "line": REMEMBER_LINE + 1, "paths": answer["lines"][0]["paths"]}]},
    ):
        assert len(_suspect_report(broken).suspects[0].traceback) == 1, broken
        assert read_call_paths(broken) == {}


def test_the_reports_say_when_a_path_is_one_of_several() -> None:
    watch = CallerWatch([(__file__, REMEMBER_LINE)], depth=4, max_seconds=60)
    watch.start()
    remember(1)
    for _ in range(2):
        remember(2)  # a second path, called more
    watch.stop()
    report = _suspect_report(watch.answer())
    assert report.suspects[0].paths_seen == 2
    assert report.suspects[0].traceback[-2].code.startswith("remember(2)")  # the most called
    text = io.StringIO()
    markdown.render(report, text)
    assert "the most called of 2 call paths" in text.getvalue()
    doc = io.StringIO()
    json_report.render(report, doc)
    assert json.loads(doc.getvalue())["suspects"][0]["paths_seen"] == 2
    assert origin(0) == ""


def test_deepen_keeps_a_traceback_that_is_already_deeper() -> None:
    frames = (Frame("a.py", 1, "a", ""), Frame("b.py", 2, "b", ""), Frame(__file__, 9, "f", ""))
    tracemalloc_made = replace(_one_suspect(), traceback=frames)
    path = {"calls": 1, "frames": [[__file__, 9, "f", ""]]}
    doc = {"lines": [{"file": __file__, "line": 9, "paths": [path]}]}
    assert deepen((tracemalloc_made,), doc, ()) == (tracemalloc_made,)


def _one_suspect():  # type: ignore[no-untyped-def]
    from analysis.model import Suspect

    return Suspect(
        file=__file__, line=9, code="", size_diff=1, count_diff=1, bytes_per_request=1.0,
        objects_per_request=0.0, traceback=(), user_frame=None, growth=(0, 1), steady=True,
    )  # fmt: skip


def test_a_line_that_never_ran_is_not_read_from_disk(tmp_path: Path) -> None:
    """The door: a file named in a request is compared with loaded code, never opened."""
    secret = tmp_path / "secret.py"
    secret.write_text("password = 'hunter2'\n")
    client = _client()
    assert _post(client, "callers/start", {"lines": [[str(secret), 1]], "depth": 3})[0] == 200
    client.get("/")
    status, answer = _post(client, "callers/stop", {})
    assert status == 200
    assert "hunter2" not in json.dumps(answer)
    assert not any(file == str(secret) for file, _line in tracing._descriptions)  # never read
    assert answer["lines"] == [{"file": str(secret), "line": 1, "calls": 0, "paths": []}]
