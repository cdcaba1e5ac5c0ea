#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install memsoak into it, editable, with the given extras.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test
# Re-running is cheap: it reinstalls only when the build inputs changed (pyproject.toml, setup.py,
# the C extensions' sources) or an extension the editable install builds into the tree is gone.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "memsoak: needs Python 3.11 or newer as '$python' (set PYTHON=...)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.memsoak-installed${extras:+-$extras}"
needs_install() {
  [ -f "$stamp" ] || return 0
  local input
  for input in pyproject.toml setup.py memsoak/agent/*.c; do
    if [ "$input" -nt "$stamp" ]; then return 0; fi
  done
  for source in memsoak/agent/*.c; do
    if ! compgen -G "${source%.c}*.so" > /dev/null; then return 0; fi
  done
  return 1
}
if needs_install; then
  echo "memsoak: installing into .venv${extras:+ (with $extras extras)}; log in .venv/setup.log" >&2
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install -e ".${extras:+[$extras]}"; } > .venv/setup.log 2>&1; then
    grep -iE "^error|ERROR:" .venv/setup.log | tail -5 >&2 || true
    echo "memsoak: setup failed; see .venv/setup.log" >&2
    exit 2
  fi
  touch "$stamp"
fi
