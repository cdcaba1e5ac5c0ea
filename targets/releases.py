"""Pinned releases of packages that a corpus target needs in one exact version, side by side.

A leak that a package's release had and the next release fixed is a target with a twin: the
same app on the fixed release. Both pins cannot live in one site-packages, so each is installed
into a directory of its own under the environment (`<sys.prefix>/memsoak-releases/NAME-VERSION`)
and a target imports its release from there (`load`). The pins are in tests/corpus-releases.txt;
`python -m targets.releases` installs them (pip, no dependencies: the pinned packages here have
none).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

PINS = Path(__file__).resolve().parent.parent / "tests" / "corpus-releases.txt"


def home(name: str, version: str) -> Path:
    return Path(sys.prefix) / "memsoak-releases" / f"{name}-{version}"


def pins(path: Path = PINS) -> list[tuple[str, str]]:
    found = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found.append((name.strip(), version.strip()))
    return found


def load(name: str, version: str) -> ModuleType:
    """Import `name` from its pinned release's directory. The target's process imports one release
    of it, first, so the directory goes first on the path."""
    where = home(name, version)
    if not where.is_dir():
        raise ImportError(f"{name}=={version} is not installed: run `{sys.executable} -m targets.releases`")
    sys.path.insert(0, str(where))
    module = importlib.import_module(name)
    found = getattr(module, "__version__", None)
    if found != version or not str(getattr(module, "__file__", "")).startswith(str(where)):
        raise ImportError(f"{name} {found} was imported from {module.__file__}, not {version} from {where}")
    return module


def install(path: Path = PINS) -> list[Path]:
    """Install every pin not yet installed; each into a temporary directory first, renamed when
    complete (two runs at once, or one killed half-way, leave no half-installed release)."""
    done = []
    for name, version in pins(path):
        where = home(name, version)
        if not where.is_dir():
            partial = where.with_name(f"{where.name}.partial-{os.getpid()}")
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                 "--target", str(partial), f"{name}=={version}"],
                check=True,
            )  # fmt: skip
            try:
                partial.rename(where)
            except OSError:
                if not where.is_dir():
                    raise
                shutil.rmtree(partial, ignore_errors=True)  # another run installed it meanwhile
        done.append(where)
    return done


if __name__ == "__main__":
    for installed in install():
        print(installed)
