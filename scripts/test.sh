#!/usr/bin/env bash
# Set up, then run the checks and the whole test suite (what CI runs).
# Usage: scripts/test.sh [--latest] [PYTEST ARGS...]
#   --latest              against the newest releases of every dependency, not requirements/lock.txt
#   PYTHON=python3.13 ... with another supported Python (3.11, 3.12, 3.13), in its own venv
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  export MEMSOAK_LATEST=1
  shift
fi
# The browser tests drive Debian's chromium (playwright cannot download its own browser here).
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium
fi
scripts/setup.sh test
source scripts/venv.sh
echo "memsoak: testing in $VENV with $("$VENV/bin/python" --version)" >&2
if [ "${MEMSOAK_LATEST:-0}" = 1 ]; then
  "$VENV/bin/python" -m pip freeze --exclude-editable > "$VENV/resolved.txt"
  echo "memsoak: the newest releases resolved to $VENV/resolved.txt (diff it against requirements/lock.txt)" >&2
fi
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
exec "$VENV/bin/python" -m pytest "$@"
