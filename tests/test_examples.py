"""The scheduling examples: each one's memsoak command line parses with the real CLI, the systemd
units pass `systemd-analyze verify`, the workflow is YAML with a schedule."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from memsoak.cli import build_parser

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "&", "2>&1", "<"}


def memsoak_argv(command: str) -> list[str]:
    """The arguments after `memsoak` in a shell command line (up to the first shell operator)."""
    # GitHub expressions are filled in by Actions before the shell sees the script.
    command = re.sub(r"\$\{\{[^}]*\}\}", "X", command.replace("\\\n", " "))
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    tokens = list(lexer)
    starts = [
        i
        for i, token in enumerate(tokens[:-1])
        if Path(token).name == "memsoak" and tokens[i + 1] in ("run", "history", "compare", "report", "serve")
    ]
    assert starts, f"no memsoak command in {command!r}"
    argv = []
    for token in tokens[starts[0] + 1 :]:
        if token in SHELL_OPERATORS or token.startswith((">", "2>")):
            break
        argv.append(token)
    return argv


def check_soak_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.command == "run"
    assert args.fail_on_regression, "a scheduled soak should fail on a regression"
    assert args.duration is not None and args.checkpoint_every is not None
    assert args.checkpoint_every <= args.duration
    assert args.history is not None and args.scenario, "nights are compared within one scenario"


def cron_commands(text: str) -> list[str]:
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"a crontab line has 5 time fields and a command: {line!r}"
        assert "%" not in fields[5], "cron turns % into a newline"
        commands.append(fields[5])
    return commands


def test_cron_line_parses() -> None:
    (command,) = cron_commands((EXAMPLES / "cron" / "memsoak-nightly.cron").read_text())
    check_soak_command(memsoak_argv(command))


def unit_values(path: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in path.read_text().splitlines() if line.startswith(f"{key}=")]


def test_systemd_service_command_parses() -> None:
    service = EXAMPLES / "systemd" / "memsoak-soak.service"
    (exec_start,) = unit_values(service, "ExecStart")
    check_soak_command(memsoak_argv(exec_start))
    assert unit_values(service, "KillSignal") == ["SIGINT"]  # stopping it ends the run with reports
    timer = EXAMPLES / "systemd" / "memsoak-soak.timer"
    assert unit_values(timer, "OnCalendar") and unit_values(timer, "WantedBy") == ["timers.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify() -> None:
    units = [EXAMPLES / "systemd" / name for name in ("memsoak-soak.service", "memsoak-soak.timer")]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_github_workflow_is_scheduled_and_its_soak_parses() -> None:
    workflow: dict[Any, Any] = yaml.safe_load((EXAMPLES / "github" / "memsoak-nightly.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    (schedule,) = triggers["schedule"]
    assert len(schedule["cron"].split()) == 5
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    soaks = [step["run"] for step in steps if "memsoak run" in step.get("run", "")]
    assert len(soaks) == 1
    check_soak_command(memsoak_argv(soaks[0]))
    uses = [step.get("uses", "") for step in steps]
    assert any(u.startswith("actions/upload-artifact") for u in uses), "the reports are kept"
    assert any(u.startswith("actions/cache/save") for u in uses), "the history is kept"
    for step in steps:  # `if: always()`: kept even when the soak fails the job
        if step.get("uses", "").startswith(("actions/upload-artifact", "actions/cache/save")):
            assert step.get("if") == "always()"


def test_the_extractor_finds_what_a_shell_would_run() -> None:
    argv = memsoak_argv("cd /x && .venv/bin/memsoak run --app a:b --out 'my dir' >> log 2>&1")
    assert argv == ["run", "--app", "a:b", "--out", "my dir"]
    with pytest.raises(AssertionError, match="fail on a regression"):
        check_soak_command(memsoak_argv("memsoak run --app a:b --requests 10"))
