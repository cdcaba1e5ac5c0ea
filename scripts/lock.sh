#!/usr/bin/env bash
# Refresh requirements/lock.txt to the newest releases that pyproject.toml's ranges allow, for every
# supported Python at once (uv's universal resolution), then run scripts/test.sh against it.
# Usage: scripts/lock.sh [--no-upgrade]   (--no-upgrade: only re-resolve what pyproject.toml changed)
set -euo pipefail
cd "$(dirname "$0")/.."
upgrade="--upgrade"
if [ "${1:-}" = "--no-upgrade" ]; then upgrade=""; fi
tools=".venv-tools"
if [ ! -x "$tools/bin/uv" ]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --disable-pip-version-check -q "uv==0.13.9"
fi
"$tools/bin/uv" pip compile pyproject.toml requirements/build.in --extra test --universal \
  --python-version 3.11 $upgrade --quiet -o requirements/lock.txt
git --no-pager diff --stat -- requirements/lock.txt
echo "memsoak: lock refreshed; now run scripts/test.sh (and PYTHON=python3.12/3.13 scripts/test.sh)" >&2
