"""Bad usage: exit 2 and one line, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("memsoak: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--no-such-option"], "unrecognized arguments"),
        (["run", "--requests", "0"], "at least 1"),
        (["run", "--requests", "lots"], "not a whole number"),
        (["run", "--warmup", "-5"], "must not be negative"),
        (["run", "--app", "no_colon"], "MODULE:ATTR"),
        (["run", "--host", "ftp://x"], "URL"),
        (["run", "--app", "x:y", "--host", "http://127.0.0.1:1"], "not allowed with"),
        (["run", "--locustfile", "/nonexistent/file.py"], "no locustfile"),
        (["report", "/nonexistent/run"], "not a memsoak run directory"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage(memsoak, args: list[str], says: str) -> None:
    assert says in _assert_one_line_error(memsoak(*args))


def test_app_that_cannot_be_imported(memsoak, tmp_path: Path) -> None:
    line = _assert_one_line_error(
        memsoak("run", "--app", "no_such_module_xyz:app", "--out", str(tmp_path / "o"))
    )
    assert "no_such_module_xyz" in line


def test_app_that_raises_on_import(memsoak, tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('database is down')\n")
    line = _assert_one_line_error(
        memsoak("run", "--app", "broken_app:app", "--app-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    )
    assert "database is down" in line


def test_host_with_nothing_listening(memsoak, tmp_path: Path) -> None:
    """No agent answering is a failed target (exit 3), not bad usage; and no load, no report."""
    url = f"http://127.0.0.1:{_free_port()}"
    out = tmp_path / "o"
    line = _assert_one_line_error(
        memsoak("run", "--host", url, "--agent-token", "t", "--out", str(out)), code=3
    )
    assert line.startswith(f"memsoak: error: no agent answering at {url}")
    assert not (out / "report.json").exists()


def test_wrong_agent_token_is_refused(memsoak, start_target, tmp_path: Path) -> None:
    target = start_target("targets.seed_fixed.app:app")
    line = _assert_one_line_error(
        memsoak("run", "--host", target.url, "--agent-token", "wrong", "--out", str(tmp_path / "o"))
    )
    assert "refused the token" in line


def test_unwritable_output_directory(memsoak, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = _assert_one_line_error(memsoak("run", "--out", str(blocker / "sub")))
    assert "cannot write to output directory" in line
