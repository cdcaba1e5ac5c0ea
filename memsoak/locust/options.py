"""memsoak's Locust options. Like every Locust option each is also an env var (LOCUST_MEMSOAK_*)
and a locust.conf key (memsoak-requests = 10000)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.thresholds import THRESHOLD_OPTIONS, Thresholds, threshold_types, thresholds_from
from memsoak.defaults import (
    DEFAULT_CHECKPOINTS,
    DEFAULT_HISTORY,
    DEFAULT_NATIVE_WINDOW,
    DEFAULT_REQUESTS,
    DEFAULT_RETENTION_SECONDS,
    DEFAULT_WARMUP,
    MAX_NATIVE_WINDOW,
    parse_duration,
)
from memsoak.errors import MemsoakError


def add_options(parser: Any) -> None:
    group = parser.add_argument_group("memsoak", "memory-leak hunting with memsoak")
    group.add_argument(
        "--memsoak-requests",
        type=int,
        default=None,
        env_var="LOCUST_MEMSOAK_REQUESTS",
        help=f"measured requests, exactly (default {DEFAULT_REQUESTS}; not with --memsoak-duration)",
    )
    group.add_argument(
        "--memsoak-duration",
        default="",
        env_var="LOCUST_MEMSOAK_DURATION",
        help="a time-bound soak instead of a request count: measure for this long (8h, 10m, 90s)",
    )
    group.add_argument(
        "--memsoak-checkpoint-every",
        default="",
        env_var="LOCUST_MEMSOAK_CHECKPOINT_EVERY",
        help="with --memsoak-duration: a checkpoint snapshot this often (default duration/checkpoints)",
    )
    group.add_argument(
        "--memsoak-history",
        default="",
        env_var="LOCUST_MEMSOAK_HISTORY",
        help=f"SQLite file to record the run in (default: env MEMSOAK_HISTORY, else {DEFAULT_HISTORY})",
    )
    group.add_argument(
        "--memsoak-scenario",
        default="",
        env_var="LOCUST_MEMSOAK_SCENARIO",
        help="name of this scenario in the history (default: locustfile name @ host)",
    )
    group.add_argument(
        "--memsoak-target",
        default="",
        env_var="LOCUST_MEMSOAK_TARGET",
        help="name of the target in the history (default: --host)",
    )
    group.add_argument(
        "--memsoak-revision",
        default="",
        env_var="LOCUST_MEMSOAK_REVISION",
        help="source revision of the target, for the history (default: none)",
    )
    group.add_argument(
        "--memsoak-fail-on-regression",
        action="store_true",
        default=False,
        env_var="LOCUST_MEMSOAK_FAIL_ON_REGRESSION",
        help="exit 1 when bytes per request are clearly above this scenario's recent history",
    )
    group.add_argument(
        "--memsoak-warmup",
        type=int,
        default=DEFAULT_WARMUP,
        env_var="LOCUST_MEMSOAK_WARMUP",
        help="requests before the baseline snapshot, not measured (default %(default)s)",
    )
    group.add_argument(
        "--memsoak-checkpoints",
        type=int,
        default=DEFAULT_CHECKPOINTS,
        env_var="LOCUST_MEMSOAK_CHECKPOINTS",
        help="snapshots evenly spaced over the measured requests, the last at the end (default %(default)s)",
    )
    group.add_argument(
        "--memsoak-agent-token",
        default="",
        env_var="LOCUST_MEMSOAK_AGENT_TOKEN",
        help="the agent's token (default: env MEMSOAK_TOKEN)",
    )
    group.add_argument(
        "--memsoak-agent-url",
        default="",
        env_var="LOCUST_MEMSOAK_AGENT_URL",
        help="where the agent answers (default: --host)",
    )
    group.add_argument(
        "--memsoak-out",
        default="",
        env_var="LOCUST_MEMSOAK_OUT",
        help="directory for data and reports (default memsoak-out/<timestamp>)",
    )
    group.add_argument(
        "--memsoak-fail-on-leak",
        action="store_true",
        default=False,
        env_var="LOCUST_MEMSOAK_FAIL_ON_LEAK",
        help="exit 1 when the verdict is a leak",
    )
    group.add_argument(
        "--memsoak-format",
        default="all",
        env_var="LOCUST_MEMSOAK_FORMAT",
        help="reports to write, comma-separated: json, markdown, html, junit, csv (default all)",
    )
    group.add_argument(
        "--memsoak-sample-interval",
        type=float,
        default=1.0,
        env_var="LOCUST_MEMSOAK_SAMPLE_INTERVAL",
        help="seconds between RSS samples (default %(default)s)",
    )
    group.add_argument(
        "--memsoak-agent-timeout",
        type=float,
        default=120.0,
        env_var="LOCUST_MEMSOAK_AGENT_TIMEOUT",
        help="seconds to wait for the agent, a snapshot included (default %(default)s)",
    )
    group.add_argument(
        "--memsoak-agent-wait",
        type=float,
        default=0.0,
        env_var="LOCUST_MEMSOAK_AGENT_WAIT",
        help="seconds to keep trying while nothing answers at the agent's address: a target "
        "started at the same time as Locust (default %(default)s: fail at once)",
    )
    group.add_argument(
        "--memsoak-until-confident",
        action="store_true",
        default=False,
        env_var="LOCUST_MEMSOAK_UNTIL_CONFIDENT",
        help="snapshot often and stop as soon as the verdict is settled; --memsoak-requests is the cap",
    )
    group.add_argument(
        "--memsoak-watch",
        action="store_true",
        default=False,
        env_var="LOCUST_MEMSOAK_WATCH",
        help="low overhead: watch RSS and a census with tracing off; trace a short window once growth shows",
    )
    group.add_argument(
        "--memsoak-frames",
        type=int,
        default=0,
        env_var="LOCUST_MEMSOAK_FRAMES",
        help="traceback depth when the plugin turns tracing on at the baseline (default: the target's)",
    )
    group.add_argument(
        "--memsoak-native-window",
        type=int,
        default=DEFAULT_NATIVE_WINDOW,
        env_var="LOCUST_MEMSOAK_NATIVE_WINDOW",
        help="after a native-leak verdict, record this many more requests with memray to name the "
        "native sites (0: never; default %(default)s)",
    )
    group.add_argument(
        "--memsoak-retention-seconds",
        type=float,
        default=DEFAULT_RETENTION_SECONDS,
        env_var="LOCUST_MEMSOAK_RETENTION_SECONDS",
        help="after a leak verdict, time the agent may spend finding what keeps each suspect "
        "alive; 0 skips it (default %(default)s)",
    )
    group.add_argument(
        "--memsoak-target-log",
        default="",
        env_var="LOCUST_MEMSOAK_TARGET_LOG",
        help="the target's log file: when requests fail, the report quotes its last exception",
    )
    _add_threshold_options(group)


def _add_threshold_options(group: Any) -> None:
    defaults = Thresholds()
    for name, kind in threshold_types().items():
        option, meaning = THRESHOLD_OPTIONS[name]
        group.add_argument(
            f"--memsoak-{option}",
            type=kind,
            default=None,
            env_var=f"LOCUST_MEMSOAK_{option.upper().replace('-', '_')}",
            help=f"verdict threshold: {meaning} (default {getattr(defaults, name)})",
        )


@dataclass(frozen=True, slots=True)
class Settings:
    requests: int
    warmup: int
    checkpoints: int
    agent_url: str
    agent_token: str
    out: Path
    fail_on_leak: bool
    sample_interval: float
    agent_timeout: float
    agent_wait: float = 0.0
    formats: tuple[str, ...] = ()  # report writers to run; empty: all
    duration_s: float | None = None  # a time-bound soak: no request budget
    checkpoint_every_s: float | None = None
    history: Path | None = None
    scenario: str = ""
    target: str = ""
    revision: str = ""
    fail_on_regression: bool = False
    until_confident: bool = False
    frames: int = 0  # 0: the depth the target was started with
    watch: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    target_log: Path | None = None
    native_window: int = DEFAULT_NATIVE_WINDOW

    @classmethod
    def from_options(cls, options: Any) -> Settings:
        requests = options.memsoak_requests
        duration_s, every_s = _soak_clock(options)
        if duration_s is not None and requests is not None:
            raise MemsoakError("--memsoak-requests and --memsoak-duration are mutually exclusive")
        if requests is None:
            requests = DEFAULT_REQUESTS
        if requests < 1:
            raise MemsoakError(f"--memsoak-requests must be at least 1, got {requests}")
        if options.memsoak_warmup < 0:
            raise MemsoakError(f"--memsoak-warmup must not be negative, got {options.memsoak_warmup}")
        if not 1 <= options.memsoak_checkpoints <= 1000:
            raise MemsoakError(f"--memsoak-checkpoints must be 1..1000, got {options.memsoak_checkpoints}")
        if not options.memsoak_sample_interval > 0 or not options.memsoak_agent_timeout > 0:
            raise MemsoakError("--memsoak-sample-interval and --memsoak-agent-timeout must be positive")
        if not 0 <= options.memsoak_agent_wait <= 3600:
            raise MemsoakError(
                f"--memsoak-agent-wait must be 0..3600 seconds, got {options.memsoak_agent_wait}"
            )
        agent_url = options.memsoak_agent_url or options.host or ""
        if not agent_url:
            raise MemsoakError("no target: pass --host (or --memsoak-agent-url)")
        token = options.memsoak_agent_token or os.environ.get("MEMSOAK_TOKEN", "")
        if not token:
            raise MemsoakError("no agent token: pass --memsoak-agent-token or set MEMSOAK_TOKEN")
        from analysis.writers import UnknownFormat, parse_formats
        from memsoak.rundir import default_out_dir

        try:
            formats = parse_formats(getattr(options, "memsoak_format", "all") or "all")
        except UnknownFormat as exc:
            raise MemsoakError(f"--memsoak-format: {exc}") from None
        try:
            thresholds = thresholds_from(
                {name: getattr(options, f"memsoak_{name_option(name)}", None) for name in THRESHOLD_OPTIONS}
            )
        except ValueError as exc:
            raise MemsoakError(f"--memsoak-{exc}") from None
        retention_seconds = getattr(options, "memsoak_retention_seconds", DEFAULT_RETENTION_SECONDS)
        if not 0 <= retention_seconds <= 120:
            raise MemsoakError(f"--memsoak-retention-seconds must be 0..120, got {retention_seconds}")

        return cls(
            requests=requests,
            warmup=options.memsoak_warmup,
            checkpoints=options.memsoak_checkpoints,
            agent_url=agent_url,
            agent_token=token,
            out=Path(options.memsoak_out) if options.memsoak_out else default_out_dir(),
            fail_on_leak=bool(options.memsoak_fail_on_leak),
            sample_interval=options.memsoak_sample_interval,
            agent_timeout=options.memsoak_agent_timeout,
            agent_wait=options.memsoak_agent_wait,
            formats=formats,
            duration_s=duration_s,
            checkpoint_every_s=every_s,
            history=Path(options.memsoak_history or os.environ.get("MEMSOAK_HISTORY") or DEFAULT_HISTORY),
            scenario=options.memsoak_scenario or _default_scenario(options),
            target=options.memsoak_target or options.host or agent_url,
            revision=options.memsoak_revision,
            fail_on_regression=bool(options.memsoak_fail_on_regression),
            until_confident=bool(getattr(options, "memsoak_until_confident", False)),
            frames=_frames(getattr(options, "memsoak_frames", 0)),
            watch=bool(getattr(options, "memsoak_watch", False)),
            thresholds=thresholds,
            retention_seconds=retention_seconds,
            target_log=Path(log) if (log := getattr(options, "memsoak_target_log", "")) else None,
            native_window=_native_window(getattr(options, "memsoak_native_window", DEFAULT_NATIVE_WINDOW)),
        )


def _soak_clock(options: Any) -> tuple[float | None, float | None]:
    """(duration, checkpoint interval) in seconds for a time-bound soak; (None, None) otherwise."""
    if not options.memsoak_duration:
        if options.memsoak_checkpoint_every:
            raise MemsoakError("--memsoak-checkpoint-every goes with --memsoak-duration")
        return None, None
    try:
        duration = parse_duration(options.memsoak_duration)
        every = (
            parse_duration(options.memsoak_checkpoint_every)
            if options.memsoak_checkpoint_every
            else duration / max(1, options.memsoak_checkpoints)
        )
    except ValueError as exc:
        raise MemsoakError(str(exc)) from None
    if every > duration:
        raise MemsoakError("--memsoak-checkpoint-every must not be longer than --memsoak-duration")
    return duration, every


def _default_scenario(options: Any) -> str:
    locustfile = getattr(options, "locustfile", None) or "locustfile"
    stem = Path(str(locustfile).split(",")[0]).stem
    return f"{stem}@{options.host}" if options.host else stem


def _frames(frames: int) -> int:
    if not 0 <= frames <= 100:
        raise MemsoakError(f"--memsoak-frames must be 1..100 (0: the target's own), got {frames}")
    return frames


def _native_window(requests: int) -> int:
    if not 0 <= requests <= MAX_NATIVE_WINDOW:
        raise MemsoakError(f"--memsoak-native-window must be 0..{MAX_NATIVE_WINDOW} (0: off), got {requests}")
    return requests


def name_option(name: str) -> str:
    """The argparse attribute suffix of a threshold's option (`min-requests` -> `min_requests`)."""
    return THRESHOLD_OPTIONS[name][0].replace("-", "_")
