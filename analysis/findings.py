"""One finding per root: the suspects one root keeps alive, merged into one.

A registry keeps its items and everything they hold (a Logger, its level cache, the registry's
own table: three sites); a leaked traceback keeps its frames and all their locals (the request's
environ at the server's line, its headers, the app's objects: many sites). The agent says which
suspects share a root (`RetentionPath.group`). Each group becomes one finding whose bytes per
request are the group's sum, blamed on the line that made the root (where the registry's newest
item, or the unreferenced object, was allocated) and the first user frame on its traceback; the
sites stay listed under it as `members`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from analysis.model import Frame, Member, Suspect, Traceback
from analysis.suspects import user_frame


def _ends_with(traceback: Traceback, tail: Traceback) -> bool:
    """`traceback` (perhaps deepened by call paths, analysis/call_paths.py) ends with `tail`."""
    if not tail or len(tail) > len(traceback):
        return False
    ends = traceback[-len(tail) :]
    return all((a.file, a.line) == (b.file, b.line) for a, b in zip(ends, tail, strict=True))


def _created_at(traceback: Traceback, library_files: Sequence[str]) -> Frame | None:
    """The call that made it: the first frame in the user's code, or the innermost when that is."""
    return user_frame(traceback, library_files) or (traceback[-1] if traceback else None)


def _through(group: list[Suspect], made: Traceback) -> Traceback:
    """`made` as deep as a member's traceback that passes through its innermost frame: a series
    traced one frame deep records one frame of the call that made the root, while the members'
    call paths (deepened) go on up to the user's code through that same call."""
    inner = made[-1]
    for suspect in group:
        for index, frame in enumerate(suspect.traceback):
            if (frame.file, frame.line) == (inner.file, inner.line) and index + 1 > len(made):
                return suspect.traceback[: index + 1]
    return made


def _merge(group: list[Suspect], library_files: Sequence[str]) -> Suspect:
    top = group[0]
    path = top.retention
    assert path is not None
    made = path.created_traceback
    blamed = next((s for s in group if _ends_with(s.traceback, made)), None)
    if blamed is None and path.kind == "unreachable" and made:
        # The unreferenced object (a leaked traceback) is small and may not be a suspect
        # itself: it is still where the leak was made.
        made = _through(group, made)
        inner = made[-1]
        blamed = replace(
            top,
            file=inner.file,
            line=inner.line,
            code=inner.code,
            traceback=made,
            user_frame=user_frame(made, library_files),
            paths_seen=0,
            path_kept=False,
        )
    blamed = blamed or top
    created = None if path.kind == "unknown" else _created_at(blamed.traceback, library_files)
    growth = tuple(sum(sizes) for sizes in zip(*(s.growth for s in group), strict=False))
    return replace(
        blamed,
        size_diff=sum(s.size_diff for s in group),
        count_diff=sum(s.count_diff for s in group),
        bytes_per_request=sum(s.bytes_per_request for s in group),
        objects_per_request=sum(s.objects_per_request for s in group),
        fit_per_request=sum(s.fit_per_request for s in group),
        growth=growth or top.growth,
        steady=any(s.steady for s in group),
        late_ratio=top.late_ratio,
        grew_share=top.grew_share,
        retention=replace(path, created_at=created),
        members=tuple(Member(s.file, s.line, s.bytes_per_request) for s in group),
    )


def findings(suspects: Sequence[Suspect], library_files: Sequence[str]) -> tuple[Suspect, ...]:
    """`suspects` (most bytes per request first) with those of one root merged, most bytes per
    request first again. Suspects without a retention answer stay as they are."""
    if not any(s.retention is not None for s in suspects):
        return tuple(suspects)
    groups: list[list[Suspect]] = []
    by_root: dict[str, list[Suspect]] = {}
    for suspect in suspects:
        key = suspect.retention.group if suspect.retention is not None else None
        if key is not None and key in by_root:
            by_root[key].append(suspect)
            continue
        group = [suspect]
        groups.append(group)
        if key is not None:
            by_root[key] = group
    merged = [_merge(group, library_files) if group[0].retention else group[0] for group in groups]
    return tuple(sorted(merged, key=lambda s: -s.bytes_per_request))
