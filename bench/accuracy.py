"""How often memsoak's verdict is right: run every corpus target through `memsoak run` and compare.

    .venv/bin/python bench/accuracy.py [--requests 2000] [--jobs 2] [--only NAME ...] [--json OUT]

For each target in targets/corpus (and the seed pair, and the Django project in
targets/django_shop through its WSGI and its ASGI entry point) it reads the expected verdict, the planted
line and the planted caller from the module docstring, runs `memsoak run` on it with the corpus
scenario (locustfiles/corpus.py), and checks the verdict and, for leaks, that the top suspect is
the planted line (its allocation site or, for a library allocation, its first user frame). It
prints a confusion table (expected verdict x verdict got), one row per target, and last
`N passed, N failed`. Exit status 0 when all passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "targets" / "corpus"
LOCUSTFILE = REPO / "locustfiles" / "corpus.py"
VERDICTS = ("leak", "no-leak", "native-leak", "inconclusive", "error")
# The seed pair, beside the corpus: (module path, file holding the docstring).
SEEDS = (
    ("targets.seed_leak.app", REPO / "targets" / "seed_leak" / "app.py"),
    ("targets.seed_fixed.app", REPO / "targets" / "seed_fixed" / "app.py"),
)
DJANGO_DIR = REPO / "targets" / "django_shop"
# (name, --app, the views module whose docstring states the verdict), all under --app-dir DJANGO_DIR.
DJANGO = tuple(
    (f"{name}_{interface}", f"{project}.{interface}:application", DJANGO_DIR / project / "views.py")
    for name, project in (("django", "shop"), ("django_fixed", "shop_fixed"))
    for interface in ("wsgi", "asgi")
)


@dataclass(frozen=True)
class Target:
    name: str
    module: str  # importable module holding `app`
    expected: str
    planted: str | None = None  # "file.py:N"
    caller: str | None = None  # a function the leak's traceback must go through
    paths: str = "/"
    kind: str | None = None  # the top finding's retention kind
    holder: str | None = None  # a reachable one's holder starts with this
    root: str | None = None  # an unreachable one's root
    requests: int = 0  # measured requests it needs at least (a plateau that takes long to show)
    spec: str = ""  # --app, when not `module:app`
    app_dir: str = ""  # --app-dir, when the app is not importable from the repository
    source: Path | None = None  # the file with the docstring, when not `module`'s

    @property
    def app(self) -> str:
        return self.spec or f"{self.module}:app"


@dataclass
class Outcome:
    target: Target
    got: str = "error"
    confidence: float = 0.0
    rule: str = ""
    top: str | None = None  # top suspect "file.py:N" (user frame when the site is a library's)
    top_matches: bool | None = None  # None when the target plants no line
    retention: str | None = None
    kind: str | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.got == self.target.expected and self.top_matches is not False and not self.problems


def _field(doc: str, name: str) -> str | None:
    match = re.search(rf"^{name}:\s*(\S.*?)\s*$", doc, re.MULTILINE)
    return match.group(1) if match else None


def read_target(module: str, path: Path, name: str = "", spec: str = "", app_dir: str = "") -> Target:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    expected = _field(doc, "Expected verdict")
    if expected not in ("leak", "no-leak", "native-leak"):
        raise ValueError(f"{path}: no 'Expected verdict: leak|no-leak|native-leak' line")
    return Target(
        name=name
        or (module.rsplit(".", 1)[-1] if module.startswith("targets.corpus.") else module.split(".")[1]),
        module=module,
        expected=expected,
        planted=_field(doc, "Planted line"),
        caller=_field(doc, "Planted caller"),
        paths=_field(doc, "Paths") or "/",
        kind=_field(doc, "Retention kind"),
        holder=_field(doc, "Retention holder"),
        root=_field(doc, "Retention root"),
        requests=int(_field(doc, "Requests") or 0),
        spec=spec,
        app_dir=app_dir,
        source=path,
    )


def discover() -> list[Target]:
    found = [read_target(module, path) for module, path in SEEDS]
    for path in sorted(CORPUS.glob("*.py")):
        if not path.name.startswith("_"):  # __init__, and apps that twin targets share
            found.append(read_target(f"targets.corpus.{path.stem}", path))
    for name, spec, path in DJANGO:
        module = spec.split(":")[0]
        found.append(read_target(module, path, name=name, spec=spec, app_dir=str(DJANGO_DIR)))
    return found


def _where(frame: dict[str, Any] | None) -> str | None:
    return f"{Path(frame['file']).name}:{frame['line']}" if frame else None


def judge(target: Target, report: dict[str, Any], outcome: Outcome) -> None:
    outcome.got = report["verdict"]
    outcome.confidence = report.get("confidence", 0.0)
    outcome.rule = report.get("rule", "")
    suspects = report.get("suspects", [])
    if suspects:
        top = suspects[0]
        site = _where(top)
        user = _where(top.get("user_frame"))
        outcome.top = user or site
        path = top.get("retention") or {}
        outcome.retention = path.get("summary") if isinstance(path, dict) else None
        outcome.kind = path.get("kind") if isinstance(path, dict) else None
    if target.planted is None:
        return
    if not suspects:
        outcome.top_matches = False
        return
    top = suspects[0]
    outcome.top_matches = target.planted in (_where(top), _where(top.get("user_frame")))
    if target.caller:
        functions = {frame["function"] for frame in top["traceback"]}
        if target.caller not in functions:
            outcome.top_matches = False
            outcome.problems.append(f"top suspect's traceback does not go through {target.caller}()")
    _judge_retention(target, top.get("retention") or {}, outcome)


def _judge_retention(target: Target, path: dict[str, Any], outcome: Outcome) -> None:
    """The top finding's retention: its kind, the holder or root, and the call that made it."""
    if target.kind is None:
        return
    if path.get("kind") != target.kind:
        outcome.problems.append(f"retention kind {path.get('kind')}, expected {target.kind}")
    if target.holder and not str(path.get("holder", "")).startswith(f"{target.holder} ("):
        outcome.problems.append(f"held by {path.get('holder')!r}, expected {target.holder}")
    if target.root and path.get("root") != target.root:
        outcome.problems.append(f"root {path.get('root')!r}, expected {target.root!r}")
    made = path.get("created_at") or {}
    if target.planted and _where(made) != target.planted:
        outcome.problems.append(f"made at {_where(made)}, expected the planted line {target.planted}")


def run_one(target: Target, out: Path, args: argparse.Namespace) -> Outcome:
    outcome = Outcome(target)
    run_dir = out / target.name
    command = [
        sys.executable, "-m", "memsoak", "run",
        "--app", target.app,
        "--locustfile", str(LOCUSTFILE),
        "--requests", str(max(args.requests, target.requests)),
        "--warmup", str(args.warmup),
        "--checkpoints", str(args.checkpoints),
        "--users", str(args.users),
        "--spawn-rate", "100",
        "--max-time", "600",
        "--out", str(run_dir),
        "--retention-seconds", str(args.retention_seconds),
    ]  # fmt: skip
    if target.app_dir:
        command += ["--app-dir", target.app_dir]
    env = {**os.environ, "MEMSOAK_CORPUS_PATHS": target.paths}
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        outcome.problems.append("memsoak run timed out")
        return outcome
    outcome.seconds = time.monotonic() - started
    report_path = run_dir / "report.json"
    if done.returncode != 0 or not report_path.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        outcome.problems.append(f"memsoak run exited {done.returncode}: {' '.join(tail)}")
        return outcome
    judge(target, json.loads(report_path.read_text(encoding="utf-8")), outcome)
    return outcome


def confusion_table(outcomes: list[Outcome]) -> list[str]:
    counts = Counter((o.target.expected, o.got) for o in outcomes)
    shown = [v for v in VERDICTS if any(o.got == v or o.target.expected == v for o in outcomes)]
    width = max(len(v) for v in shown) + 2
    lines = ["expected \\ got".ljust(16) + "".join(v.rjust(width) for v in shown)]
    for expected in shown:
        if any(o.target.expected == expected for o in outcomes):
            lines.append(expected.ljust(16) + "".join(str(counts[(expected, g)]).rjust(width) for g in shown))
    return lines


def target_rows(outcomes: list[Outcome]) -> list[str]:
    rows = [
        f"{'target':<18} {'expected':<12} {'got':<12} {'conf':>5}  {'top suspect':<26} "
        f"{'planted?':<9} {'secs':>5}  rule"
    ]
    for o in outcomes:
        planted = "-" if o.top_matches is None else ("yes" if o.top_matches else "NO")
        rows.append(
            f"{o.target.name:<18} {o.target.expected:<12} {o.got:<12} {o.confidence:>5.2f}  "
            f"{(o.top or '-'):<26} {planted:<9} {o.seconds:>5.0f}  {o.rule}"
            + ("" if o.passed else "   FAILED")
        )
        for problem in o.problems:
            rows.append(f"    {problem}")
        if o.retention:
            rows.append(f"    {o.kind or 'kept'}: {o.retention}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per target")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--checkpoints", type=int, default=5)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument(
        "--retention-seconds", type=float, default=20.0, help="budget of the retention search per leak"
    )
    parser.add_argument("--jobs", type=int, default=2, help="targets run at once (the machine has 2 cores)")
    parser.add_argument("--only", nargs="*", help="target names to run (default: all)")
    parser.add_argument("--out", type=Path, help="run directories (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    args = parser.parse_args(argv)
    targets = [t for t in discover() if not args.only or t.name in args.only]
    if not targets:
        parser.error("no such target")
    # The pinned releases some targets run (tests/corpus-releases.txt), installed once.
    releases = [sys.executable, "-m", "targets.releases"]
    subprocess.run(releases, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    out = args.out or Path(os.environ.get("TMPDIR", "/tmp")) / f"memsoak-accuracy-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"{len(targets)} targets, {args.requests} measured requests each after {args.warmup} warm-up, "
        f"{args.checkpoints} checkpoints, {args.jobs} at a time; runs in {out}",
        flush=True,
    )
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda t: run_one(t, out, args), targets))
    print()
    for line in confusion_table(outcomes):
        print(line)
    print()
    for line in target_rows(outcomes):
        print(line)
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(o), "passed": o.passed} for o in outcomes], indent=1, default=str),
            encoding="utf-8",
        )
    passed = sum(o.passed for o in outcomes)
    print(f"\n{passed} passed, {len(outcomes) - passed} failed")
    return 0 if passed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
