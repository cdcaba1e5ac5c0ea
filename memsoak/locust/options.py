"""memsoak's Locust options. Like every Locust option each is also an env var (LOCUST_MEMSOAK_*)
and a locust.conf key (memsoak-requests = 10000)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.thresholds import THRESHOLD_OPTIONS, Thresholds, threshold_types, thresholds_from
from memsoak.errors import MemsoakError

DEFAULT_REQUESTS = 10_000
DEFAULT_WARMUP = 200
DEFAULT_CHECKPOINTS = 5
DEFAULT_RETENTION_SECONDS = 20.0


def add_options(parser: Any) -> None:
    group = parser.add_argument_group("memsoak", "memory-leak hunting with memsoak")
    group.add_argument(
        "--memsoak-requests",
        type=int,
        default=DEFAULT_REQUESTS,
        env_var="LOCUST_MEMSOAK_REQUESTS",
        help="measured requests, exactly (default %(default)s)",
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
        "--memsoak-retention-seconds",
        type=float,
        default=DEFAULT_RETENTION_SECONDS,
        env_var="LOCUST_MEMSOAK_RETENTION_SECONDS",
        help="after a leak verdict, time the agent may spend finding what keeps each suspect "
        "alive; 0 skips it (default %(default)s)",
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
    thresholds: Thresholds = field(default_factory=Thresholds)
    retention_seconds: float = DEFAULT_RETENTION_SECONDS

    @classmethod
    def from_options(cls, options: Any) -> Settings:
        requests = options.memsoak_requests
        if requests < 1:
            raise MemsoakError(f"--memsoak-requests must be at least 1, got {requests}")
        if options.memsoak_warmup < 0:
            raise MemsoakError(f"--memsoak-warmup must not be negative, got {options.memsoak_warmup}")
        if not 1 <= options.memsoak_checkpoints <= 1000:
            raise MemsoakError(f"--memsoak-checkpoints must be 1..1000, got {options.memsoak_checkpoints}")
        if not options.memsoak_sample_interval > 0 or not options.memsoak_agent_timeout > 0:
            raise MemsoakError("--memsoak-sample-interval and --memsoak-agent-timeout must be positive")
        agent_url = options.memsoak_agent_url or options.host or ""
        if not agent_url:
            raise MemsoakError("no target: pass --host (or --memsoak-agent-url)")
        token = options.memsoak_agent_token or os.environ.get("MEMSOAK_TOKEN", "")
        if not token:
            raise MemsoakError("no agent token: pass --memsoak-agent-token or set MEMSOAK_TOKEN")
        from memsoak.rundir import default_out_dir

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
            thresholds=thresholds,
            retention_seconds=retention_seconds,
        )


def name_option(name: str) -> str:
    """The argparse attribute suffix of a threshold's option (`min-requests` -> `min_requests`)."""
    return THRESHOLD_OPTIONS[name][0].replace("-", "_")
