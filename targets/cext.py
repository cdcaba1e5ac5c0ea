"""Test C extensions (tests/cext/NAME.c), built when a target first needs one.

A corpus target that reproduces a bug in C code imports its extension with `load("NAME")`: the
source is compiled with the running interpreter's compiler settings (sysconfig: the compiler,
flags and include directory CPython was built with, as setuptools does) into
`<sys.prefix>/memsoak-cext/NAME-<hash of the source>/`, once; a changed source gets a new
directory. The shared object is written under a temporary name and renamed, so two targets
starting at once never load a half-written one.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

SOURCES = Path(__file__).resolve().parent.parent / "tests" / "cext"


def build(name: str) -> Path:
    source = SOURCES / f"{name}.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    built = Path(sys.prefix) / "memsoak-cext" / f"{name}-{digest}" / f"{name}{suffix}"
    if built.is_file():
        return built
    built.parent.mkdir(parents=True, exist_ok=True)
    partial = built.with_name(f"{built.name}.partial-{os.getpid()}")
    config = sysconfig.get_config_vars()
    compiler = shlex.split(str(config.get("CC") or "cc"))
    flags = shlex.split(str(config.get("CFLAGS") or "")) + shlex.split(str(config.get("CCSHARED") or ""))
    command = [
        *compiler, *flags, "-Wall", "-Wextra", "-Werror", "-shared", "-o", str(partial),
        f"-I{sysconfig.get_paths()['include']}", str(source),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ImportError(f"building {source} failed: {done.stderr.strip()[-500:]}")
    partial.rename(built)
    return built


def load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, build(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module
