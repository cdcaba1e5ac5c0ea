"""The numbers behind a verdict, with their defaults. Settable from the CLI and Locust options."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Thresholds:
    # Below this many measured requests no verdict but "inconclusive" is given.
    min_measured_requests: int = 200
    # A site is a suspect when its live size grew by at least both of these over the run.
    suspect_min_bytes_per_request: float = 32.0
    suspect_min_total_bytes: int = 32 * 1024
    # With three or more snapshots, a suspect is "steady" (a leak, not a plateau) when its growth
    # rate over the second half of the run is at least this fraction of its overall rate.
    steady_ratio: float = 0.5
    # Native leak: RSS grows at least this much per request and in total, while traced memory
    # (plus tracemalloc's own bookkeeping) explains less than `native_traced_share` of it.
    native_min_bytes_per_request: float = 512.0
    native_min_total_bytes: int = 8 * 1024 * 1024
    native_traced_share: float = 0.25
    max_suspects: int = 25
