"""Every option of `memsoak run`, `serve` and `report`, given bad values: exit 2 and one line on
stderr, never a traceback. A test below fails when an option is added without bad values here.

Most values are refused while parsing: those run in this process, with the command's handler
replaced by one that fails the test (a bad value that got through would otherwise start a run).
The few that can only be found out later (an app that cannot be imported, an address that
cannot be bound, an unwritable output directory) run as real processes, each with a bound.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from memsoak import cli

REPO = Path(__file__).resolve().parent.parent
FILE = str(Path(__file__).resolve())  # an existing file that is not a directory
MISSING = "/nonexistent/memsoak-test"

# (command, option) -> bad values. An empty option name is the positional argument.
BAD: dict[tuple[str, str], list[str]] = {
    ("run", "--app"): ["no_colon", ":app", "module:", ""],
    ("run", "--host"): [
        "ftp://x",
        "127.0.0.1:8000",
        "http://",
        "http://[::1",
        "http://h:99999",
        "http://h/?q=1",
    ],
    ("run", "--app-dir"): [MISSING, FILE],
    ("run", "--agent-token"): ["", "has space", "tab\there", "caf\u00e9", "x" * 1025],
    ("run", "--locustfile"): [MISSING + ".py", str(REPO)],
    ("run", "--requests"): ["0", "-1", "1.5", "lots", "", "1e3", "9" * 5000],
    ("run", "--warmup"): ["-5", "x", "2.0"],
    ("run", "--checkpoints"): ["0", "1001", "x"],
    ("run", "--users"): ["0", "-3", "ten"],
    ("run", "--spawn-rate"): ["0", "-1", "nan", "inf", "fast"],
    ("run", "--out"): [f"{FILE}/out"],
    ("run", "--fail-on-leak"): ["yes"],
    ("run", "--frames"): ["0", "101", "deep"],
    ("run", "--native-window"): ["-1", "100001", "1.5", "many"],
    ("run", "--max-time"): ["0", "-60", "1h"],
    ("run", "--agent-timeout"): ["0", "nan", "inf", "-1", "soon"],
    ("serve", ""): ["nocolon", "mod:", "no_such_module_for_memsoak_tests:app"],
    ("serve", "--app-dir"): [MISSING, FILE],
    ("serve", "--bind"): [
        "nope",
        "127.0.0.1",
        "127.0.0.1:99999",
        "127.0.0.1:-1",
        ":80",
        "bad host!:80",
        "10.255.255.1:0",
    ],
    ("serve", "--token"): ["", "with space", "x" * 1025],
    ("serve", "--frames"): ["0", "101", "x"],
    ("serve", "--allow"): ["10.0.0.0/33", "banana", ""],
    ("report", ""): [MISSING, FILE],
    ("report", "--format"): ["pdf", "html,nope"],
    ("run", "--format"): ["pdf", "html,nope"],
    ("run", "--duration"): ["0", "forever", "-1h"],
    ("run", "--checkpoint-every"): ["0", "soon", "-5m"],
    ("run", "--history"): [str(REPO), ""],
    ("run", "--scenario"): ["", "two\nlines", "x" * 201],
    ("run", "--revision"): ["", "two\nlines"],
    ("run", "--fail-on-regression"): ["yes"],
    ("run", "--until-confident"): ["yes"],
    ("run", "--watch"): ["yes"],
    ("run", "--workers"): ["-1", "two"],
    ("run", "--server"): ["uwsgi", ""],
    ("run", "--server-workers"): ["0", "x"],
    ("run", "--min-requests"): ["-1", "x"],
    ("run", "--min-bytes-per-request"): ["-1", "x", "nan"],
    ("run", "--min-total-bytes"): ["-1", "x"],
    ("run", "--steady-ratio"): ["-1", "x", "nan"],
    ("run", "--plateau-ratio"): ["-1", "x", "nan"],
    ("run", "--native-min-bytes-per-request"): ["-1", "x", "nan"],
    ("run", "--native-min-total-bytes"): ["-1", "x"],
    ("run", "--native-traced-share"): ["-1", "x", "nan"],
    ("run", "--max-failed-share"): ["-1", "x", "nan", "1.5"],
    ("run", "--interface"): ["asgi2", ""],
    ("run", "--retention-seconds"): ["-1", "x", "121"],
    ("serve", "--no-trace"): ["yes"],
    ("serve", "--quick-exit"): ["yes"],
    ("serve", "--server"): ["uwsgi"],
    ("serve", "--workers"): ["0", "x"],
    ("serve", "--worker-class"): ["threads!"],
    ("serve", "--interface"): ["wsgi3"],
    ("history", "--history"): [str(REPO), ""],
    ("history", "--scenario"): ["", "two\nlines"],
    ("history", "--limit"): ["0", "x"],
    ("compare", ""): [MISSING],
    ("compare", "--history"): [str(REPO), ""],
}

# Values only found out after parsing: run as processes.
LATE = {
    ("run", "--out", f"{FILE}/out"),
    ("serve", "", "no_such_module_for_memsoak_tests:app"),
    ("serve", "--bind", "10.255.255.1:0"),
}
# Checked together once parsed (the thresholds as a set, the retention bound): also processes.
LATE |= {
    ("run", option, value)
    for (command, option), values in BAD.items()
    if command == "run"
    and option
    in (
        "--min-requests",
        "--min-bytes-per-request",
        "--min-total-bytes",
        "--steady-ratio",
        "--plateau-ratio",
        "--native-min-bytes-per-request",
        "--native-min-total-bytes",
        "--native-traced-share",
        "--max-failed-share",
        "--retention-seconds",
    )
    for value in values
}


def _flag_only(action: argparse.Action) -> bool:
    return action.nargs == 0


def _options() -> set[tuple[str, str]]:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = set()
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            found.add((name, action.option_strings[-1] if action.option_strings else ""))
    return found


def test_every_option_has_bad_values_here() -> None:
    missing = _options() - set(BAD)
    assert not missing, f"add bad values for these options to BAD in {__file__}: {sorted(missing)}"
    assert not set(BAD) - _options(), "options listed here that the CLI no longer has"


def _argv(command: str, option: str, value: str) -> list[str]:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = subparsers.choices[command]
    action = next((a for a in sub._actions if option and option in a.option_strings), None)
    if action is not None and _flag_only(action):
        return [command, f"{option}={value}"]  # a flag given a value
    if command == "serve" and option:
        return [command, "targets.seed_fixed.app:app", option, value]
    if command in ("serve", "report") and not option:
        return [command, value]
    if command == "compare":
        return [command, value, value] if not option else [command, "1", "2", option, value]
    return [command, option, value]


CASES = [
    pytest.param(command, option, value, id=f"{command}-{option or 'positional'}-{value[:20]!r}")
    for (command, option), values in BAD.items()
    for value in values
]


def _refuse_to_start(args: argparse.Namespace) -> int:
    raise AssertionError(f"a bad value was accepted: {args}")


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_bad_value_gives_exit_2_and_one_line(
    command: str, option: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv = _argv(command, option, value)
    if command == "run" and option not in ("--app", "--host", "--app-dir"):
        argv += ["--app", "targets.seed_fixed.app:app"]
    if command == "run" and option != "--out":
        argv += ["--out", str(tmp_path / "out")]
    if (command, option, value) in LATE:
        result = subprocess.run(
            [sys.executable, "-m", "memsoak", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        code, stderr = result.returncode, result.stderr
    else:
        monkeypatch.setattr(cli, "_run", _refuse_to_start)
        monkeypatch.setattr(cli, "_serve", _refuse_to_start)
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            code = cli.main(argv)
        stderr = err.getvalue()
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memsoak: error: "), stderr
    assert "Traceback" not in stderr


def test_good_values_of_the_same_options_are_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The checks above refuse bad values, not everything: the same options with good values parse."""
    seen: list[argparse.Namespace] = []

    def accept(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(cli, "_run", accept)
    monkeypatch.setattr(cli, "_serve", accept)
    good: list[list[str]] = [
        ["run", "--host", "http://127.0.0.1:8000/", "--agent-token", "tok-EN_1.~", "--requests", "1_000",
         "--warmup", "0", "--checkpoints", "1000", "--users", "3", "--spawn-rate", "0.5", "--frames", "100",
         "--max-time", "60", "--agent-timeout", "2.5", "--fail-on-leak", "--out", str(tmp_path),
         "--locustfile", str(REPO / "locustfiles" / "seed.py")],
        ["run", "--app", "targets.seed_fixed.app:app", "--app-dir", str(REPO)],
        ["run", "--host", "http://[::1]:8000"],
        ["serve", "targets.seed_fixed.app:app", "--bind", "[::1]:0", "--token", "t", "--frames", "1",
         "--allow", "10.200.0.0/16", "--allow", "::1", "--app-dir", str(REPO)],
        ["serve", "m:a", "--bind", "localhost:8080"],
    ]  # fmt: skip
    for argv in good:
        assert cli.main(argv) == 0, argv
    assert len(seen) == len(good)


def test_a_broken_locustfile_is_an_error_not_a_leak(tmp_path: Path) -> None:
    """Locust exits 1 when the scenario raises: that must not read as exit 1, "leak"."""
    locustfile = tmp_path / "broken.py"
    locustfile.write_text(
        "from locust import task\nfrom memsoak.locust import MemsoakHttpUser\n"
        "raise RuntimeError('broken scenario')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "memsoak", "run", "--app", "targets.faults.slow_leak:app", "--locustfile",
         str(locustfile), "--requests", "300", "--out", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Locust did not run" in lines[0]
    assert "RuntimeError: broken scenario" in lines[0]
