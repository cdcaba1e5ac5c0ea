"""What ran, in one line: the run's phases (the warm-up, the measured series, each window after
it) as the reports say them."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.model import Phase


def _depth(frames: int) -> str:
    if frames <= 0:
        return "untraced"
    return f"traced {frames} frame{'s' if frames != 1 else ''} deep"


def phases_line(phases: Sequence[Phase]) -> str:
    """e.g. "200 warm-up requests untraced; 10,000 measured, traced 1 frame deep (6 snapshots);
    100 watching the call paths, traced 10 frames deep (the call paths to 1 line)". "" when the
    run recorded none (reports of runs made before phases were)."""
    parts = []
    for phase in phases:
        text = f"{phase.requests:,} {phase.name}, {_depth(phase.frames)}"
        parts.append(f"{text} ({phase.took})" if phase.took else text)
    return "; ".join(parts)
