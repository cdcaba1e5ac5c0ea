"""The numbers behind a verdict, with their defaults. Settable from the CLI (`memsoak run
--min-bytes-per-request ...`) and Locust (`--memsoak-min-bytes-per-request ...`); see
`THRESHOLD_OPTIONS` for the option of each field."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Thresholds:
    # Below this many measured requests no verdict but "inconclusive" is given.
    min_measured_requests: int = 200
    # The noise floor: a site is a suspect when its live size grew by at least both of these over
    # the measured requests. 32 B/request keeps a ~100 B/request leak well above it; 32 KB keeps
    # one-off allocations of a few objects (a lazily built table) below it.
    suspect_min_bytes_per_request: float = 32.0
    suspect_min_total_bytes: int = 32 * 1024
    # With three or more snapshots, a suspect is "steady" (a leak, not a plateau) when its growth
    # rate over the later half of the run is at least this fraction of its overall rate...
    steady_ratio: float = 0.5
    # ...and a "plateau" when it is below this one. In between the data cannot decide: the site
    # is still growing, but slower (a cache still filling, or a leak with bursty load).
    plateau_ratio: float = 0.2
    # Native leak: RSS grows at least this much per request and in total beyond what traced
    # memory and tracemalloc's own bookkeeping explain, while traced memory explains less than
    # `native_traced_share` of RSS growth.
    native_min_bytes_per_request: float = 512.0
    native_min_total_bytes: int = 8 * 1024 * 1024
    native_traced_share: float = 0.25
    max_suspects: int = 25
    # More than this share of the measured requests failed: the target erred and cannot be
    # judged (inconclusive, never no-leak). 1% lets a rare timeout pass.
    max_failed_share: float = 0.01


# field -> (CLI option of `memsoak run`, help). Locust's option is `--memsoak-` + the same name.
THRESHOLD_OPTIONS: dict[str, tuple[str, str]] = {
    "min_measured_requests": ("min-requests", "fewer measured requests than this: inconclusive"),
    "suspect_min_bytes_per_request": ("min-bytes-per-request", "noise floor: a suspect grows at least this"),
    "suspect_min_total_bytes": ("min-total-bytes", "noise floor: a suspect grows at least this in all"),
    "steady_ratio": ("steady-ratio", "late/overall growth rate at or above which a site leaks"),
    "plateau_ratio": ("plateau-ratio", "late/overall growth rate below which a site has plateaued"),
    "native_min_bytes_per_request": ("native-min-bytes-per-request", "untraced RSS growth for native-leak"),
    "native_min_total_bytes": ("native-min-total-bytes", "untraced RSS growth in all for native-leak"),
    "native_traced_share": ("native-traced-share", "traced share of RSS growth below which it is native"),
    "max_failed_share": ("max-failed-share", "share of measured requests failed above which: inconclusive"),
}


def threshold_types() -> dict[str, type]:
    """The Python type of each settable field (int or float), for option parsers."""
    defaults = Thresholds()
    return {
        f.name: type(getattr(defaults, f.name)) for f in fields(Thresholds) if f.name in THRESHOLD_OPTIONS
    }


def thresholds_from(values: dict[str, object]) -> Thresholds:
    """Thresholds with the given fields replaced (None means the default); checks their ranges."""
    chosen = {k: v for k, v in values.items() if k in THRESHOLD_OPTIONS and v is not None}
    limits = Thresholds(**chosen)  # type: ignore[arg-type]
    for name in chosen:
        value = getattr(limits, name)
        if not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{THRESHOLD_OPTIONS[name][0]} must not be negative, got {value!r}")
    if not 0 <= limits.plateau_ratio <= limits.steady_ratio:
        raise ValueError("plateau-ratio must be between 0 and steady-ratio")
    if not 0 < limits.native_traced_share <= 1:
        raise ValueError("native-traced-share must be in (0, 1]")
    if not 0 <= limits.max_failed_share <= 1:
        raise ValueError("max-failed-share must be in [0, 1]")
    return limits
