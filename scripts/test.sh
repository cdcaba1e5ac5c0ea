#!/usr/bin/env bash
# Set up, then run the checks and the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser tests drive Debian's chromium (playwright cannot download its own browser here).
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium
fi
scripts/setup.sh test
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
