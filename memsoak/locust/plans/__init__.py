"""The run plans, one module per way to run (plans/base.py says how they work and how to add
one), and which one a run's settings ask for."""

from __future__ import annotations

from memsoak.locust.plans.base import Plan
from memsoak.locust.plans.fixed import FixedCount
from memsoak.locust.plans.soak import DurationSoak
from memsoak.locust.plans.until_confident import UntilConfident
from memsoak.locust.plans.watch import Watch
from memsoak.locust.plans.window import Window
from memsoak.locust.session import Session

__all__ = ["DurationSoak", "FixedCount", "Plan", "UntilConfident", "Watch", "Window", "plan_for"]


def plan_for(session: Session) -> Plan:
    settings = session.settings
    if settings.duration_s is not None:
        return DurationSoak(session)
    if settings.watch:
        return Watch(session)
    if settings.until_confident:
        return UntilConfident(session)
    return FixedCount(session)
