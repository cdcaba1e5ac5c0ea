"""Is this run's bytes per request clearly above the recent history of the same scenario?

The rule (README, "Soak tests"): take the last `window` finished runs of the scenario (at least
`min_runs` of them, else no judgement). Their median is the baseline and 1.4826 x their median
absolute deviation the spread (a robust standard deviation: one odd night cannot move either).
The run regressed when its traced bytes per request exceed

    baseline + max(spread_factor x spread, relative_margin x |baseline|, floor)

so it must be well outside the usual noise, at least `relative_margin` worse, and at least
`floor` bytes per request worse, whichever is largest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True, slots=True)
class RegressionRule:
    window: int = 10
    min_runs: int = 3
    spread_factor: float = 4.0
    relative_margin: float = 0.5
    floor: float = 64.0  # bytes per request; twice the smallest growth a suspect may have


@dataclass(frozen=True, slots=True)
class RegressionResult:
    judged: bool  # False when there was too little history to judge
    regressed: bool
    value: float
    baseline: float
    limit: float
    runs: int  # how many past runs the baseline came from
    explanation: str


def judge(value: float, history: Sequence[float], rule: RegressionRule | None = None) -> RegressionResult:
    """`history`: bytes per request of past runs, oldest first (only the last `rule.window` count)."""
    rule = rule or RegressionRule()
    recent = list(history)[-rule.window :]
    if len(recent) < rule.min_runs:
        return RegressionResult(
            False,
            False,
            value,
            0.0,
            0.0,
            len(recent),
            f"{len(recent)} earlier finished run(s) of this scenario; "
            f"need {rule.min_runs} to judge a regression",
        )
    baseline = median(recent)
    spread = 1.4826 * median(abs(v - baseline) for v in recent)
    limit = baseline + max(rule.spread_factor * spread, rule.relative_margin * abs(baseline), rule.floor)
    regressed = value > limit
    verb = "above" if regressed else "within"
    return RegressionResult(
        True,
        regressed,
        value,
        baseline,
        limit,
        len(recent),
        f"{value:,.0f} B/request is {verb} the limit of {limit:,.0f} B/request "
        f"(median {baseline:,.0f} of the last {len(recent)} runs)",
    )
