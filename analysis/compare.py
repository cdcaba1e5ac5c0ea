"""What grew between two runs: suspects new in B, gone from B, or changed by a clear margin."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from analysis.model import Suspect
from analysis.report import Report

# A suspect "changed" when its bytes per request moved by more than both of these.
MIN_CHANGE_BYTES = 32.0
MIN_CHANGE_RATIO = 0.25

SiteKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SiteChange:
    file: str
    line: int
    code: str
    before: float  # bytes per request in run A (0 when absent)
    after: float  # bytes per request in run B (0 when absent)

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass(frozen=True, slots=True)
class Comparison:
    verdicts: tuple[str, str]
    traced_per_request: tuple[float, float]
    rss_per_request: tuple[float, float]
    new: tuple[SiteChange, ...]  # suspects in B only, largest first
    gone: tuple[SiteChange, ...]  # suspects in A only
    grew: tuple[SiteChange, ...]
    shrank: tuple[SiteChange, ...]
    unchanged: tuple[SiteChange, ...]


def _by_site(suspects: Iterable[Suspect]) -> dict[SiteKey, tuple[str, float]]:
    """Bytes per request per allocation line: several tracebacks ending on one line add up."""
    sites: dict[SiteKey, tuple[str, float]] = {}
    for suspect in suspects:
        key = (suspect.file, suspect.line)
        code, total = sites.get(key, (suspect.code, 0.0))
        sites[key] = (code, total + suspect.bytes_per_request)
    return sites


def _changed(before: float, after: float) -> bool:
    delta = abs(after - before)
    return delta > MIN_CHANGE_BYTES and delta > MIN_CHANGE_RATIO * max(abs(before), abs(after))


def compare_reports(a: Report, b: Report) -> Comparison:
    sites_a, sites_b = _by_site(a.suspects), _by_site(b.suspects)
    new, gone, grew, shrank, unchanged = [], [], [], [], []
    for key in sites_a.keys() | sites_b.keys():
        code = (sites_b.get(key) or sites_a[key])[0]
        before = sites_a[key][1] if key in sites_a else 0.0
        after = sites_b[key][1] if key in sites_b else 0.0
        change = SiteChange(key[0], key[1], code, before, after)
        if key not in sites_a:
            new.append(change)
        elif key not in sites_b:
            gone.append(change)
        elif not _changed(before, after):
            unchanged.append(change)
        elif after > before:
            grew.append(change)
        else:
            shrank.append(change)

    def ordered(changes: list[SiteChange]) -> tuple[SiteChange, ...]:
        return tuple(sorted(changes, key=lambda c: (-abs(c.delta), c.file, c.line)))

    return Comparison(
        verdicts=(a.verdict.kind, b.verdict.kind),
        traced_per_request=(a.traced.per_request, b.traced.per_request),
        rss_per_request=(a.rss.per_request, b.rss.per_request),
        new=ordered(new),
        gone=ordered(gone),
        grew=ordered(grew),
        shrank=ordered(shrank),
        unchanged=ordered(unchanged),
    )
