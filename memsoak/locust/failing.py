"""When failed requests have settled the verdict before the run ends: the load stops then.

A target that errors on every request cannot be judged (the `requests-failed` rule), and running
its budget out only wastes the night: a Django view with a SyntaxError, imported lazily, answered
0.3 requests a second, each an HTTP 500, and the run would have gone on for its whole hour
(`--max-time`) to say it had too little data. Two signs settle it:

- the measured requests that failed are already more than the verdict allows of the planned
  count (`--max-failed-share` of `--requests`): whatever follows, the verdict is inconclusive;
- most requests so far have failed (two in three), at least FAIL_FAST_MIN of them, warm-up
  included: the target errors, it is not a glitch (a first request or two that fail as a service
  warms up are not enough). Half is not most: the count of completed requests may lag a
  failure or two behind, and a target failing every other request is left to the first sign
  and to `--max-failed-share`.
"""

from __future__ import annotations

FAIL_FAST_MIN = 20


def failures_settle_it(
    *,
    failed_measured: int,
    failed_warmup: int,
    completed: int,
    planned_measured: int | None,
    max_failed_share: float,
) -> str | None:
    """Why the run stops now (the event's words), or None while it should go on. `completed`:
    requests completed so far, warm-up included; `planned_measured`: None for a plan without a
    count (a soak by the clock)."""
    if planned_measured is not None and failed_measured > max_failed_share * planned_measured:
        return (
            f"{failed_measured:,} measured requests failed, more than the {max_failed_share:.1%} of "
            f"{planned_measured:,} the verdict allows: it can only be inconclusive"
        )
    failed = failed_measured + failed_warmup
    completed = max(completed, failed)  # Locust tells of a request before the gate counts it
    if failed >= FAIL_FAST_MIN and 3 * failed > 2 * completed:
        return f"{failed:,} of the first {completed:,} requests failed: the target errors on most requests"
    return None
