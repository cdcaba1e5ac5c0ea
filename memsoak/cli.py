"""The `memsoak` command. Thin: each command parses its options and calls the library."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from memsoak.cli_types import (
    app_spec,
    bind,
    directory,
    duration,
    existing_file,
    formats,
    history_file,
    int_in,
    label,
    network,
    non_negative_int,
    positive_float,
    positive_int,
    token,
    url,
)
from memsoak.errors import MemsoakError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise MemsoakError(message)


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        type=formats,
        default=None,
        metavar="LIST",
        help="reports to write, comma-separated: json, markdown, html, junit, csv (default: all)",
    )


def _add_run(commands: argparse._SubParsersAction[_Parser]) -> None:
    from memsoak.defaults import (
        DEFAULT_CHECKPOINTS,
        DEFAULT_HISTORY,
        DEFAULT_NATIVE_WINDOW,
        DEFAULT_REQUESTS,
        DEFAULT_SPAWN_RATE,
        DEFAULT_WARMUP,
        MAX_NATIVE_WINDOW,
    )
    from memsoak.run import DEFAULT_APP, DEFAULT_LOCUSTFILE

    p = commands.add_parser("run", help="hunt a leak: drive N requests at a target and report")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--app", type=app_spec, help=f"WSGI or ASGI app to start under the agent (default {DEFAULT_APP})"
    )
    where.add_argument("--host", type=url, help="a running target with the agent installed")
    p.add_argument("--app-dir", type=directory, help="put DIR first on the target's import path")
    p.add_argument("--agent-token", type=token, help="the agent's token (env MEMSOAK_TOKEN)")
    p.add_argument("--locustfile", type=existing_file, default=DEFAULT_LOCUSTFILE, help="the scenario")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--requests", type=positive_int, help=f"measured requests, exactly (default {DEFAULT_REQUESTS})"
    )
    budget.add_argument(
        "--duration", type=duration, help="a time-bound soak: measure for this long (8h, 10m, 1h30m, 90s)"
    )
    p.add_argument(
        "--checkpoint-every", type=duration, help="with --duration: a checkpoint this often (e.g. 10m)"
    )
    p.add_argument(
        "--warmup", type=non_negative_int, default=DEFAULT_WARMUP, help="requests before the baseline"
    )
    p.add_argument(
        "--checkpoints", type=int_in(1, 1000), default=DEFAULT_CHECKPOINTS, help="snapshots over the run"
    )
    p.add_argument("--users", type=positive_int, default=10, help="concurrent Locust users")
    # Every user up within the warm-up: a user's first request opens its connection, and a
    # connection opened after the baseline is target memory that looks like growth.
    p.add_argument(
        "--spawn-rate", type=positive_float, default=DEFAULT_SPAWN_RATE, help="users started per second"
    )
    p.add_argument("--out", type=Path, help="report directory (default memsoak-out/<timestamp>)")
    p.add_argument("--fail-on-leak", action="store_true", help="exit 1 when the verdict is a leak")
    p.add_argument(
        "--frames",
        type=int_in(1, 100),
        help="trace the whole series this deep (default: one frame, then the suspects' call paths deeper)",
    )
    p.add_argument(
        "--max-time",
        type=positive_int,
        help="hard cap on the load, seconds (default 3600, or the --duration plus 10%% and at least 600)",
    )
    _add_format(p)
    p.add_argument(
        "--agent-timeout",
        type=positive_float,
        default=120.0,
        help="seconds to wait for the agent (a snapshot included) before the target counts as failed",
    )
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        help="Locust worker processes under a master (default: none)",
    )
    p.add_argument(
        "--server",
        choices=("gevent", "gunicorn"),
        default="gevent",
        help="what serves a started target (--app)",
    )
    p.add_argument(
        "--server-workers", type=positive_int, default=1, help="the started target's worker processes"
    )
    _add_interface(p)
    p.add_argument(
        "--history",
        type=history_file,
        help=f"SQLite file to record the run in (default: env MEMSOAK_HISTORY, else {DEFAULT_HISTORY})",
    )
    p.add_argument(
        "--scenario", type=label, help="the run's scenario name in the history (default LOCUSTFILE@TARGET)"
    )
    p.add_argument(
        "--revision", type=label, help="source revision of the target (default: git, in --app-dir or here)"
    )
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when bytes per request are clearly above the scenario's recent history",
    )
    p.add_argument(
        "--until-confident",
        action="store_true",
        help="stop as soon as the verdict is settled (--requests is then the cap)",
    )
    p.add_argument(
        "--native-window",
        type=int_in(0, MAX_NATIVE_WINDOW),
        metavar="N",
        help=f"after a native-leak verdict, record N more requests with memray to name the native "
        f"sites (0: never; default {DEFAULT_NATIVE_WINDOW})",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="low overhead: trace nothing until RSS or the object census grows, then a short window",
    )
    _add_verdict_options(p)
    p.set_defaults(handler=_run)


def _add_verdict_options(p: _Parser) -> None:
    from analysis.thresholds import THRESHOLD_OPTIONS, Thresholds, threshold_types
    from memsoak.defaults import DEFAULT_RETENTION_SECONDS

    group = p.add_argument_group("verdict thresholds (README: How memsoak decides)")
    defaults = Thresholds()
    for name, kind in threshold_types().items():
        option, meaning = THRESHOLD_OPTIONS[name]
        group.add_argument(
            f"--{option}",
            dest=f"threshold_{name}",
            metavar="N",
            type=positive_float if kind is float else non_negative_int,
            help=f"{meaning} (default {getattr(defaults, name)})",
        )
    group.add_argument(
        "--retention-seconds",
        type=float,
        default=DEFAULT_RETENTION_SECONDS,
        help="time the agent may spend finding what keeps each leak suspect alive; 0 skips it",
    )


def _run(args: argparse.Namespace) -> int:
    from memsoak.defaults import DEFAULT_REQUESTS
    from memsoak.run import RunOptions, detect_revision, run
    from memsoak.rundir import default_out_dir

    if args.app_dir and not args.app:
        raise MemsoakError("--app-dir goes with --app")
    if args.host and (args.server != "gevent" or args.server_workers != 1 or args.interface != "auto"):
        raise MemsoakError(
            "--server, --server-workers and --interface are for a started target (--app), not --host"
        )
    if args.checkpoint_every is not None and args.duration is None:
        raise MemsoakError("--checkpoint-every goes with --duration")
    if args.checkpoint_every is not None and args.checkpoint_every > args.duration:
        raise MemsoakError("--checkpoint-every must not be longer than --duration")
    history = _history_path(args)
    revision = args.revision if args.revision is not None else detect_revision(args.app_dir or ".")
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
            requests=args.requests or DEFAULT_REQUESTS,
            warmup=args.warmup,
            checkpoints=args.checkpoints,
            users=args.users,
            spawn_rate=args.spawn_rate,
            out=args.out or default_out_dir(),
            fail_on_leak=args.fail_on_leak,
            frames=args.frames,
            max_time_s=args.max_time,
            formats=args.format or (),
            agent_timeout_s=args.agent_timeout,
            workers=args.workers,
            server=args.server,
            server_workers=args.server_workers,
            interface=args.interface,
            duration_s=args.duration,
            checkpoint_every_s=args.checkpoint_every,
            history=history,
            scenario=args.scenario or "",
            revision=revision,
            fail_on_regression=args.fail_on_regression,
            until_confident=args.until_confident,
            watch=args.watch,
            native_window=args.native_window,
            verdict_args=tuple(verdict_args),
        )
    )


def _add_interface(p: _Parser) -> None:
    from memsoak.hosting import INTERFACES

    p.add_argument(
        "--interface",
        choices=INTERFACES,
        default="auto",
        help="the app's interface (default auto: ASGI when its __call__ is a coroutine function, as "
        "uvicorn tells; ASGI apps are served by uvicorn)",
    )


def _add_serve(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser("serve", help="serve a WSGI or ASGI app under the agent")
    p.add_argument("app", type=app_spec, metavar="MODULE:ATTR")
    p.add_argument("--app-dir", type=directory, help="put DIR first on the import path")
    p.add_argument(
        "--bind", type=bind, default="127.0.0.1:0", help="HOST:PORT (default: a free loopback port)"
    )
    p.add_argument(
        "--token", type=token, help="agent token (default: env MEMSOAK_TOKEN, else a new one, printed once)"
    )
    p.add_argument("--frames", type=int_in(1, 100), default=None, help="traceback depth to trace")
    p.add_argument(
        "--allow", type=network, action="append", metavar="CIDR", help="networks allowed to use the agent"
    )
    p.add_argument(
        "--server", choices=("gevent", "gunicorn"), default="gevent", help="the WSGI server (ASGI: uvicorn)"
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes (gevent: forked after binding; ASGI: gunicorn with uvicorn's worker class)",
    )
    _add_interface(p)
    p.add_argument(
        "--worker-class",
        choices=("sync", "gthread", "gevent"),
        default="sync",
        help="gunicorn worker class: sync, gthread or gevent",
    )
    p.add_argument(
        "--no-trace",
        dest="trace",
        action="store_false",
        help="start with tracemalloc off (memsoak run's plugin turns it on at the baseline)",
    )
    p.add_argument(
        "--quick-exit",
        action="store_true",
        help="skip the interpreter's garbage collections at exit (memsoak run starts its targets so)",
    )
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
        trace=args.trace,
        allow=tuple(args.allow) if args.allow else LOOPBACK,
        server_kind=args.server,
        workers=args.workers,
        worker_class=args.worker_class,
        quick_exit=args.quick_exit,
        interface=args.interface,
    )


def _add_report(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser("report", help="render the reports of a run directory again")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    _add_format(p)
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from memsoak.progress import TerminalView, summary_doc
    from memsoak.rundir import render_run

    report, paths = render_run(args.run_dir, formats=args.format)
    TerminalView().print_summary(summary_doc(report, paths))
    return 0


def _history_path(args: argparse.Namespace) -> Path:
    from memsoak.defaults import DEFAULT_HISTORY

    return Path(args.history or os.environ.get("MEMSOAK_HISTORY") or DEFAULT_HISTORY)


def _add_history(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser("history", help="list recorded runs and the bytes-per-request trend")
    p.add_argument("--history", type=history_file, help="the SQLite run history (default: as for `run`)")
    p.add_argument("--scenario", type=label, help="only this scenario")
    p.add_argument("--limit", type=positive_int, default=20, help="last N runs per scenario (default 20)")
    p.set_defaults(handler=_history)


def _history(args: argparse.Namespace) -> int:
    from memsoak.history import History
    from memsoak.history_view import history_lines

    records = History(_history_path(args)).runs(args.scenario)
    for line in history_lines(records, args.limit):
        print(line)
    return 0


def _add_compare(commands: argparse._SubParsersAction[_Parser]) -> None:
    p = commands.add_parser("compare", help="what grew between two runs (history ids or run directories)")
    p.add_argument("run_a", metavar="RUN_A", help="the earlier run: a history id or a run directory")
    p.add_argument("run_b", metavar="RUN_B", help="the later run")
    p.add_argument(
        "--history", type=history_file, help="the SQLite run history, for ids (default: as for `run`)"
    )
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from memsoak.compare import compare_runs

    for line in compare_runs(args.run_a, args.run_b, _history_path(args)):
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
    _add_history(commands)
    _add_compare(commands)
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
