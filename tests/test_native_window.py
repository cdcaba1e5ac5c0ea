"""The native window: memray in the target after a native-leak verdict, or for a raw buffer,
names the native sites.

Real processes throughout: a C extension of the tests' own (tests/cext/nativeleak.c, built by
targets/cext.py like the corpus' others) served by gevent and by uvicorn, a real leaking release
of pydantic's Rust core beside its fixed release (tests/native/requirements-*.txt, installed here
into a directory of their own), ujson 5.3.0's dropped buffer beside 5.4.0, the corpus' ctypes
target, and a target that does not leak."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analysis.native import read_native, trim_stack
from memsoak.agent.native import NativeWindow
from memsoak.agent_client import AgentClient, AgentError
from memsoak.target import TargetProcess
from targets import cext

REPO = Path(__file__).resolve().parent.parent
CEXT = REPO / "tests" / "cext"
NATIVE = REPO / "tests" / "native"
PLANTED_BLOCK = 16 * 1024  # nativeleak_app.py's BLOCK
RUN = ("--requests", "1000", "--warmup", "100", "--checkpoints", "4", "--users", "4")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="memray runs on Linux")


def _build_nativeleak(into: Path) -> Path:
    """tests/cext/nativeleak.c built the way the corpus' test extensions are (targets/cext.py),
    with its app beside it: a directory to pass as --app-dir."""
    shutil.copy(cext.build("nativeleak"), into)
    shutil.copy(CEXT / "nativeleak_app.py", into)
    return into


@pytest.fixture(scope="module")
def nativeleak_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_nativeleak(tmp_path_factory.mktemp("nativeleak"))


def _pydantic(tmp: Path, release: str) -> tuple[Path, dict[str, str]]:
    """The app's directory and the environment that puts the pinned release on the target's path,
    in a directory named like an installed one (its frames are a library's, not the user's)."""
    site = tmp / "site-packages"
    requirements = NATIVE / f"requirements-pydantic-{release}.txt"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), "-r", str(requirements)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    app_dir = tmp / "app"
    app_dir.mkdir()
    shutil.copy(NATIVE / "pydantic_app.py", app_dir)
    return app_dir, {"PYTHONPATH": str(site)}


def _run_pydantic(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp: Path, release: str
) -> dict[str, Any]:
    app_dir, env = _pydantic(tmp, release)
    report, _ = _run(memsoak, tmp / "out", "--app", "pydantic_app:app", "--app-dir", str(app_dir), env=env)
    return report


def _report(out: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def _run(
    memsoak: Callable[..., subprocess.CompletedProcess[str]],
    out: Path,
    *app: str,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """A whole `memsoak run` that ends well: its report.json and its output."""
    done = memsoak("run", *app, *RUN, "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return _report(out), done.stdout


def _functions(site: dict[str, Any]) -> list[str]:
    return [frame["function"] for frame in site["stack"]]


# memray's greenlet support crashed CPython 3.12.1 and 3.13.0 targets under gevent: the agent
# refuses the window there (memsoak/agent/native.py `unavailable`), and these tests of windows in
# gevent targets, or in this process (which has greenlets), run on 3.11 only. The ASGI test below
# runs the window on every Python.
GREENLET_WINDOW = pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="memray's greenlet support crashes CPython 3.12+ targets: the agent refuses the window there",
)

# -- the reduction (pure) ------------------------------------------------------------------------


def test_unknown_frames_collapse_and_the_stack_ends_at_the_first_user_frame() -> None:
    frames = [
        ["<unknown>", "<unknown>", 0],
        ["<unknown>", "<unknown>", 0],
        ["type_call", "Objects/typeobject.c", 1091],
        ["__init__", "/venv/site-packages/lib/adapter.py", 210],
        ["index", "/srv/app.py", 12],
        ["dispatch", "/venv/site-packages/flask/app.py", 900],
    ]
    stack, user = trim_stack(frames, ["/venv/site-packages/"])
    assert [f.function for f in stack] == ["<unknown>", "type_call", "__init__", "index"]
    assert stack[0].file is None and stack[0].line is None
    assert user is not None and (user.file, user.line) == ("/srv/app.py", 12)


def test_blocks_kept_once_in_a_window_are_no_site() -> None:
    """An arena or a buffer that grew once in the window is left allocated at its end, but it is
    not per request: the floor on blocks per request keeps it out."""
    answer = {
        "windows": [
            {
                "requests": 300,
                "rss_start": 0,
                "rss_end": 0,
                "library_files": [],
                "stacks": [
                    {"bytes": 1 << 20, "count": 1, "frames": [["new_arena", "Objects/obmalloc.c", 9]]}
                ],
            }
        ]
    }
    window = read_native(answer, rss_per_request=3000.0)
    assert window is not None and window.sites == () and not window.explains_growth


@GREENLET_WINDOW
def test_a_capture_over_its_limit_is_not_read_and_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process: memray's tracker around some allocations, with a limit no capture fits."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # not the shared /tmp other runs use
    requests = [0]
    window = NativeWindow(lambda: requests[0], max_seconds=60, max_bytes=1)
    window.start()
    kept = [bytearray(4096) for _ in range(100)]
    requests[0] = 100
    answer = window.stop()
    assert len(kept) == 100
    assert answer["stacks"] == [] and "over the limit of 1" in answer["note"]
    assert answer["requests"] == 100 and answer["capture_bytes"] > 1
    assert _native_dirs(tmp_path) == set()


# -- the agent's window, on real targets ---------------------------------------------------------


def _drive(url: str, requests: int) -> None:
    for _ in range(requests):
        with urllib.request.urlopen(url + "/", timeout=30) as answer:
            answer.read()


def _native_dirs(where: Path) -> set[str]:
    return {p.name for p in where.glob("memsoak-native-*")}


@GREENLET_WINDOW
def test_no_leak_target_has_no_native_site_and_the_capture_is_removed(
    start_target: Callable[..., TargetProcess], token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temporary directory of the target's own: other runs on the machine make capture
    # directories in the shared one meanwhile.
    private_tmp = tmp_path / "target-tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    target = start_target("targets.seed_fixed.app:app")
    agent = AgentClient(target.url, token)
    _drive(target.url, 100)  # warm: first-use allocations are no window's
    agent.start_native(60)
    _drive(target.url, 300)
    assert len(_native_dirs(private_tmp)) == 1  # the capture is where the target's TMPDIR says
    window = read_native(agent.stop_native())
    assert window is not None and window.requests == 300
    assert window.sites == (), window.sites
    assert _native_dirs(private_tmp) == set()  # the private capture directory is gone


@GREENLET_WINDOW
def test_window_in_prefork_workers_sums_their_sites(
    start_target: Callable[..., TargetProcess], token: str, nativeleak_dir: Path
) -> None:
    """gunicorn with two workers: the worker that gets the request asks the other too, and the
    answer holds both windows, whose sites analysis sums."""
    gunicorn = ("--server", "gunicorn", "--workers", "2")
    target = start_target("nativeleak_app:app", app_dir=str(nativeleak_dir), extra_args=gunicorn)
    agent = AgentClient(target.url, token)
    _drive(target.url, 50)
    agent.start_native(60)
    _drive(target.url, 400)
    answer = agent.stop_native()
    assert len(answer["windows"]) == 2
    window = read_native(answer)
    assert window is not None and window.requests == 400 and window.processes == 2
    top = window.sites[0]
    assert "nativeleak_leak" in [f.function for f in top.stack]
    assert abs(top.bytes_per_request - PLANTED_BLOCK) <= 0.25 * PLANTED_BLOCK


def test_window_refused_with_the_reason_where_memray_is_missing(
    start_target: Callable[..., TargetProcess], token: str, tmp_path: Path
) -> None:
    no_memray = tmp_path / "no_memray"
    no_memray.mkdir()
    (no_memray / "memray.py").write_text("raise ImportError('memray is not installed here')\n")
    target = start_target("targets.corpus.native_leak:app", app_dir=str(no_memray))
    agent = AgentClient(target.url, token)
    with pytest.raises(AgentError, match="needs memray, which is not installed"):
        agent.start_native(60)


# -- whole runs ----------------------------------------------------------------------------------


@GREENLET_WINDOW
def test_c_extension_leak_named_with_its_function_and_the_apps_line(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, nativeleak_dir: Path
) -> None:
    out = tmp_path / "out"
    report, output = _run(memsoak, out, "--app", "nativeleak_app:app", "--app-dir", str(nativeleak_dir))
    assert report["verdict"] == "native-leak"
    native = report["native"]
    assert native["requests"] == 300 and report["requests"]["window"] == 300
    top = native["sites"][0]
    assert "nativeleak_leak" in _functions(top)
    user = top["stack"][-1]
    assert user["file"].endswith("nativeleak_app.py") and user["line"] == 21
    assert abs(top["bytes_per_request"] - PLANTED_BLOCK) <= 0.25 * PLANTED_BLOCK
    assert native["explained_share"] >= 0.5
    assert "nativeleak_leak" in report["explanation"] and "nativeleak_app.py:21" in report["explanation"]
    assert "memray run --native" not in report["explanation"]
    markdown = (out / "report.md").read_text()
    assert "nativeleak_leak" in markdown and "nativeleak_app.py:21" in markdown
    assert "nativeleak_leak" in (out / "report.html").read_text()
    assert "nativeleak_leak" in output


@GREENLET_WINDOW
def test_raw_buffer_of_a_c_extension_opens_the_window_and_names_its_function(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """ujson 5.3.0 (a real release) drops the output buffer it took with PyObject_Malloc when
    encoding fails: the verdict is a leak, the retention search says `raw`, and that opens the
    window. Its top site is ujson's own function, in ujson's shared object (the wheel has no
    debug information, so memray names it without a file), from the app's call."""
    out = tmp_path / "out"
    app = (
        "--app",
        "targets.corpus.ujson_buffer_leak:app",
        "--locustfile",
        str(REPO / "locustfiles" / "corpus.py"),
    )
    report, output = _run(memsoak, out, *app)
    assert report["verdict"] == "leak"
    suspect = report["suspects"][0]
    assert suspect["retention"]["kind"] == "raw"
    native = report["native"]
    assert native["requests"] == 300
    top = native["sites"][0]
    encoder = [f for f in top["stack"] if f["function"] == "JSON_EncodeObject"]
    assert encoder and Path(encoder[0]["file"]).name.startswith("ujson.") and encoder[0]["line"] is None
    user = top["stack"][-1]
    assert (Path(user["file"]).name, user["line"]) == ("_export.py", 20)
    # The planted buffer, one request in eight: the window's rate is the series' own.
    assert abs(top["bytes_per_request"] - suspect["bytes_per_request"]) <= 0.25 * suspect["bytes_per_request"]
    assert (
        "JSON_EncodeObject (in ujson." in report["explanation"] and "_export.py:20" in report["explanation"]
    )
    assert "JSON_EncodeObject" in (out / "report.md").read_text()
    assert "JSON_EncodeObject" in (out / "report.html").read_text()
    assert "raw" in output


def test_fixed_ujson_opens_no_window(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    app = (
        "--app",
        "targets.corpus.ujson_buffer_fixed:app",
        "--locustfile",
        str(REPO / "locustfiles" / "corpus.py"),
    )
    report, _ = _run(memsoak, tmp_path / "out", *app)
    assert report["verdict"] == "no-leak", report["explanation"]
    assert "native" not in report and not any("native window" in e for e in report["events"])


def test_a_leak_held_by_python_objects_opens_no_window(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """Only a raw top suspect calls for memray. The Django target's leak is reachable; its
    second suspect (a str urllib made, kept as a key: untracked by the collector) reads as raw,
    and opens no window."""
    app = (
        "--app", "shop.wsgi:application", "--app-dir", str(REPO / "targets" / "django_shop"),
        "--locustfile", str(REPO / "locustfiles" / "corpus.py"),
    )  # fmt: skip
    report, _ = _run(memsoak, tmp_path / "out", *app)
    assert report["verdict"] == "leak" and report["suspects"][0]["retention"]["kind"] == "reachable"
    assert "native" not in report and not any("native window" in e for e in report["events"])


def test_named_function_without_a_file_is_kept_and_names_the_site() -> None:
    """A function memray names without a file (an extension without debug information) is not
    collapsed with the unnamed frames: it names the site, with the shared object the agent found."""
    frames = [
        ["_PyObject_Malloc", "Objects/obmalloc.c", 2003],
        ["tracemalloc_alloc", "./Modules/_tracemalloc.c", 599],
        ["<unknown>", "<unknown>", 0],
        ["<unknown>", "<unknown>", 0],
        ["JSON_EncodeObject", "/venv/site-packages/ujson.cpython-311-x86_64-linux-gnu.so", 0],
        ["objToJSON", "<unknown>", 0],
        ["cfunction_call", "Objects/methodobject.c", 542],
        ["index", "/srv/app.py", 20],
    ]
    answer = {
        "windows": [
            {
                "requests": 100,
                "rss_start": 0,
                "rss_end": 0,
                "library_files": ["/venv/site-packages/"],
                "stacks": [{"bytes": 100 * 4096, "count": 100, "frames": frames}],
            }
        ]
    }
    window = read_native(answer, rss_per_request=4096.0)
    assert window is not None and len(window.sites) == 1
    site = window.sites[0]
    assert [f.function for f in site.stack][2:5] == ["<unknown>", "JSON_EncodeObject", "objToJSON"]
    assert site.stack[4].file is None
    assert site.named_frame.where() == "JSON_EncodeObject (in ujson.cpython-311-x86_64-linux-gnu.so)"


def test_shared_object_of_an_exported_function_is_found() -> None:
    from memsoak.agent.shared_objects import find_objects

    found = find_objects(["PyInit__grouping", "no_such_function_anywhere"])
    from memsoak.agent import _grouping

    assert found == {"PyInit__grouping": _grouping.__file__}


def test_window_refused_in_a_312_or_later_target_with_greenlets_and_says_why() -> None:
    from memsoak.agent.native import unavailable

    why = unavailable((3, 13), {"greenlet", "gevent"})
    assert why is not None and "CPython 3.13 target" in why and "greenlet" in why and "\n" not in why
    assert unavailable((3, 12), {"greenlet"}) is not None
    assert unavailable((3, 12), {"uvicorn"}) is None and unavailable((3, 13), set()) is None
    assert unavailable((3, 11), {"greenlet"}) is None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the refusal is for CPython 3.12 and later")
def test_gevent_target_on_312_or_later_keeps_its_verdict_and_says_why_there_is_no_window(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    report, _ = _run(memsoak, tmp_path / "out", "--app", "targets.corpus.native_leak:app")
    assert report["verdict"] == "native-leak" and "native" not in report
    why = [e for e in report["events"] if "native window not recorded" in e]
    assert len(why) == 1 and f"CPython 3.{sys.version_info[1]} target" in why[0] and "greenlet" in why[0]


def test_c_extension_leak_in_an_asgi_app_under_uvicorn_is_named(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, nativeleak_dir: Path
) -> None:
    """The same leak served by uvicorn: no greenlets in the target, so the window runs on every
    Python, 3.12 included."""
    shutil.copy(CEXT / "nativeleak_asgi.py", nativeleak_dir)
    report, _ = _run(
        memsoak, tmp_path / "out", "--app", "nativeleak_asgi:app", "--app-dir", str(nativeleak_dir)
    )
    assert report["verdict"] == "native-leak"
    top = report["native"]["sites"][0]
    assert "nativeleak_leak" in _functions(top)
    user = top["stack"][-1]
    assert Path(user["file"]).name == "nativeleak_asgi.py" and user["line"] == 18
    assert abs(top["bytes_per_request"] - PLANTED_BLOCK) <= 0.25 * PLANTED_BLOCK
    assert "nativeleak_asgi.py:18" in report["explanation"]


OLD_PYDANTIC = pytest.mark.skipif(
    sys.version_info >= (3, 13),
    reason="pydantic-core 2.14.5/2.14.6 (the pinned leak and its fix) have no wheels for Python 3.13",
)


@OLD_PYDANTIC
@GREENLET_WINDOW
def test_pydantic_rust_core_leak_names_the_apps_line_and_the_librarys_frame(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    report = _run_pydantic(memsoak, tmp_path, "leaking")
    assert report["verdict"] == "native-leak"
    top = report["native"]["sites"][0]
    user = top["stack"][-1]
    assert user["file"].endswith("pydantic_app.py") and user["line"] == 34
    library = [f for f in top["stack"] if (f["file"] or "").endswith(".py") and "/pydantic/" in f["file"]]
    assert library, top["stack"]
    assert top["stack"][0]["file"] is None  # the stripped Rust frames, collapsed into one
    assert "pydantic_app.py:34" in report["explanation"]
    assert report["native"]["explained_share"] >= 0.5


@OLD_PYDANTIC
def test_pydantic_fixed_release_is_no_leak_and_records_no_window(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    report = _run_pydantic(memsoak, tmp_path, "fixed")
    assert report["verdict"] == "no-leak", report["explanation"]
    assert "native" not in report


@GREENLET_WINDOW
def test_ctypes_malloc_is_said_to_be_out_of_the_windows_sight(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """ctypes calls libc's malloc through dlsym, past memray's hooks: the window sees almost
    nothing, and the report says so with the share instead of naming a wrong site."""
    report, _ = _run(memsoak, tmp_path / "out", "--app", "targets.corpus.native_leak:app")
    assert report["verdict"] == "native-leak"
    assert report["native"]["explained_share"] < 0.5
    assert "no site is named" in report["explanation"]
    assert "top native site" not in report["explanation"]


def test_without_memray_the_verdict_stays_and_one_line_says_why(
    memsoak: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    no_memray = tmp_path / "no_memray"
    no_memray.mkdir()
    (no_memray / "memray.py").write_text("raise ImportError('memray is not installed here')\n")
    app = ("--app", "targets.corpus.native_leak:app", "--app-dir", str(no_memray))
    report, _ = _run(memsoak, tmp_path / "out", *app)
    assert report["verdict"] == "native-leak" and "native" not in report
    assert "memray run --native" in report["explanation"]
    why = [e for e in report["events"] if "native window not recorded" in e]
    assert len(why) == 1 and "memray" in why[0]


@GREENLET_WINDOW
def test_target_killed_mid_window_still_writes_its_reports(tmp_path: Path, nativeleak_dir: Path) -> None:
    """The measured run is complete when the window opens: a target that dies in the window ends
    the run as failed (exit 3) with the verdict and reports of the measured requests."""
    out = tmp_path / "out"
    app = ("--app", "nativeleak_app:app", "--app-dir", str(nativeleak_dir))
    run = subprocess.Popen(
        [sys.executable, "-m", "memsoak", "run", *app, *RUN, "--native-window", "100000", "--out", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run.stdout is not None
        seen = []
        for line in run.stdout:  # until the window opens (or the run ends, and the test fails)
            seen.append(line)
            if "recording 100000 more requests with memray" in line:
                break
        else:
            pytest.fail("the native window never opened:\n" + "".join(seen[-30:]))
        pid = json.loads((out / "snapshots" / "000-baseline.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        rest, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 3, rest[-3000:]
    report = _report(out)
    assert report["verdict"] == "native-leak" and "native" not in report
    assert report["requests"]["measured"] == 1000 and report["requests"]["failed"] == 0
    assert any("native window lost" in event for event in report["events"]), report["events"]
    assert (out / "report.md").exists() and (out / "report.html").exists()
