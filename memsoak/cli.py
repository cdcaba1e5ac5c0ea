"""The `memsoak` command. Thin: each command parses its options and calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from memsoak.errors import MemsoakError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise MemsoakError(message)


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _app_spec(text: str) -> str:
    module, sep, attr = text.partition(":")
    if not sep or not module or not attr:
        raise argparse.ArgumentTypeError(f"must be MODULE:ATTR, got {text!r}")
    return text


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def _add_run(commands: argparse._SubParsersAction[_Parser]) -> None:
    from memsoak.locust.options import DEFAULT_CHECKPOINTS, DEFAULT_REQUESTS, DEFAULT_WARMUP
    from memsoak.run import DEFAULT_APP, DEFAULT_LOCUSTFILE

    p = commands.add_parser("run", help="hunt a leak: drive N requests at a target and report")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--app", type=_app_spec, help=f"WSGI app to start under the agent (default {DEFAULT_APP})"
    )
    where.add_argument("--host", type=_url, help="a running target with the agent installed")
    p.add_argument("--app-dir", help="put DIR first on the target's import path")
    p.add_argument("--agent-token", help="the agent's token (env MEMSOAK_TOKEN)")
    p.add_argument("--locustfile", type=Path, default=DEFAULT_LOCUSTFILE, help="the scenario")
    p.add_argument(
        "--requests", type=_positive_int, default=DEFAULT_REQUESTS, help="measured requests, exactly"
    )
    p.add_argument(
        "--warmup", type=_non_negative_int, default=DEFAULT_WARMUP, help="requests before the baseline"
    )
    p.add_argument(
        "--checkpoints", type=_positive_int, default=DEFAULT_CHECKPOINTS, help="snapshots over the run"
    )
    p.add_argument("--users", type=_positive_int, default=10, help="concurrent Locust users")
    p.add_argument("--spawn-rate", type=_positive_float, default=10.0, help="users started per second")
    p.add_argument("--out", type=Path, help="report directory (default memsoak-out/<timestamp>)")
    p.add_argument("--fail-on-leak", action="store_true", help="exit 1 when the verdict is a leak")
    p.add_argument("--frames", type=_positive_int, help="traceback depth traced in a started target")
    p.add_argument("--max-time", type=_positive_int, default=3600, help="hard cap on the load, seconds")
    _add_verdict_options(p)
    p.set_defaults(handler=_run)


def _add_verdict_options(p: _Parser) -> None:
    from analysis.thresholds import THRESHOLD_OPTIONS, Thresholds, threshold_types
    from memsoak.locust.options import DEFAULT_RETENTION_SECONDS

    group = p.add_argument_group("verdict thresholds (README: How memsoak decides)")
    defaults = Thresholds()
    for name, kind in threshold_types().items():
        option, meaning = THRESHOLD_OPTIONS[name]
        group.add_argument(
            f"--{option}",
            dest=f"threshold_{name}",
            metavar="N",
            type=_positive_float if kind is float else _non_negative_int,
            help=f"{meaning} (default {getattr(defaults, name)})",
        )
    group.add_argument(
        "--retention-seconds",
        type=float,
        default=DEFAULT_RETENTION_SECONDS,
        help="time the agent may spend finding what keeps each leak suspect alive; 0 skips it",
    )


def _run(args: argparse.Namespace) -> int:
    from memsoak.run import RunOptions, run
    from memsoak.rundir import default_out_dir

    if args.app_dir and not args.app:
        raise MemsoakError("--app-dir goes with --app")
    from analysis.thresholds import THRESHOLD_OPTIONS, thresholds_from

    chosen = {name: getattr(args, f"threshold_{name}") for name in THRESHOLD_OPTIONS}
    try:
        thresholds_from(chosen)  # one clear line now rather than from inside Locust
    except ValueError as exc:
        raise MemsoakError(f"--{exc}") from None
    if not 0 <= args.retention_seconds <= 120:
        raise MemsoakError(f"--retention-seconds must be 0..120, got {args.retention_seconds}")
    verdict_args = [
        (THRESHOLD_OPTIONS[name][0], str(value)) for name, value in chosen.items() if value is not None
    ]
    verdict_args.append(("retention-seconds", str(args.retention_seconds)))
    return run(
        RunOptions(
            app=args.app,
            app_dir=args.app_dir,
            host=args.host,
            agent_token=args.agent_token,
            locustfile=args.locustfile,
            requests=args.requests,
            warmup=args.warmup,
            checkpoints=args.checkpoints,
            users=args.users,
            spawn_rate=args.spawn_rate,
            out=args.out or default_out_dir(),
            fail_on_leak=args.fail_on_leak,
            frames=args.frames,
            max_time_s=args.max_time,
            verdict_args=tuple(verdict_args),
        )
    )


def _add_serve(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser("serve", help="serve a WSGI app under the agent")
    p.add_argument("app", type=_app_spec, metavar="MODULE:ATTR")
    p.add_argument("--app-dir", help="put DIR first on the import path")
    p.add_argument("--bind", default="127.0.0.1:0", help="HOST:PORT (default: a free loopback port)")
    p.add_argument("--token", help="agent token (default: env MEMSOAK_TOKEN, else a new one, printed once)")
    p.add_argument("--frames", type=_positive_int, default=None, help="traceback depth to trace")
    p.add_argument("--allow", action="append", metavar="CIDR", help="networks allowed to use the agent")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from memsoak import serve  # patches the stdlib with gevent: only in this command
    from memsoak.agent.middleware import LOOPBACK

    return serve.serve(
        args.app,
        app_dir=args.app_dir,
        bind=args.bind,
        token=args.token,
        frames=args.frames or serve.DEFAULT_FRAMES,
        allow=tuple(args.allow) if args.allow else LOOPBACK,
    )


def _add_report(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser("report", help="render the reports of a run directory again")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from memsoak.rundir import render_run
    from memsoak.summary import summary_lines

    report, paths = render_run(args.run_dir)
    for line in summary_lines(report, paths):
        print(line)
    return 0


def build_parser() -> _Parser:
    parser = _Parser(
        prog="memsoak", description="Find memory leaks in Python web services under Locust load."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(commands)
    _add_serve(commands)
    _add_report(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code: int = args.handler(args)
        return code
    except MemsoakError as exc:
        print(f"memsoak: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("memsoak: interrupted", file=sys.stderr)
        return 130


def run_cli() -> None:
    sys.exit(main())
