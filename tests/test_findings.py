"""One finding per root, when the series was traced one frame deep: the call that made an
unreferenced root is recorded one frame deep, and the members' call paths give the rest."""

from __future__ import annotations

from analysis.findings import findings
from analysis.model import Frame, RetentionPath, Suspect

LIB = "/venv/site-packages/werkzeug/routing/rules.py"
APP = "/app/third_party.py"


def _suspect(
    line: int, traceback: tuple[Frame, ...], bytes_per_request: float, made: tuple[Frame, ...]
) -> Suspect:
    path = RetentionPath(
        found=True, method="objects", root="", steps=(), held_type="code", held_length=None,
        held_size=0, objects=1, truncated=False, note="", kind="unreachable", group="root-1",
        created_traceback=made,
    )  # fmt: skip
    return Suspect(
        file=LIB, line=line, code="", size_diff=int(bytes_per_request * 1000), count_diff=1000,
        bytes_per_request=bytes_per_request, objects_per_request=1.0, traceback=traceback,
        user_frame=None, growth=(0, 1), steady=True, retention=path,
    )  # fmt: skip


def test_an_unreferenced_root_made_one_frame_deep_is_blamed_on_the_users_line() -> None:
    made = (Frame(LIB, 728, "Rule.compile"),)  # the one frame the shallow series traced
    deep = (Frame(APP, 23, "index"), Frame(LIB, 728, "Rule.compile"), Frame(LIB, 836, "_compile_builder"))
    other = (Frame(APP, 23, "index"), Frame(LIB, 728, "Rule.compile"), Frame(LIB, 656, "_parse"))
    (finding,) = findings([_suspect(836, deep, 2000.0, made), _suspect(656, other, 600.0, made)], [LIB])
    assert (finding.file, finding.line) == (LIB, 728)
    assert finding.traceback == deep[:2]
    assert finding.retention is not None and finding.retention.created_at == Frame(APP, 23, "index")
    assert finding.bytes_per_request == 2600.0
    assert [(m.line, m.bytes_per_request) for m in finding.members] == [(836, 2000.0), (656, 600.0)]


def test_without_a_deeper_member_the_call_stays_as_recorded() -> None:
    made = (Frame(LIB, 728, "Rule.compile"),)
    shallow = (Frame(LIB, 836, "_compile_builder"),)
    (finding,) = findings([_suspect(836, shallow, 2000.0, made)], [LIB])
    assert finding.traceback == made
    assert finding.retention is not None and finding.retention.created_at == made[0]
