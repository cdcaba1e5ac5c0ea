#!/usr/bin/env bash
# Create the venv (see scripts/venv.sh for which) and install memsoak into it, editable, with the
# given extras, at the versions in requirements/lock.txt: the ones the suite was run with.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test;  PYTHON=python3.13 scripts/setup.sh
# Re-running is cheap: it reinstalls only when the build inputs changed (pyproject.toml, setup.py,
# the lock, the C extensions' sources) or an extension the editable install builds into the tree
# for this Python is gone. MEMSOAK_LATEST=1 installs the newest releases instead, every time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
extras="${1:-}"
lock="requirements/lock.txt"
if [ ! -x "$VENV/bin/python" ]; then
  "$MEMSOAK_PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.memsoak-installed${extras:+-$extras}"
needs_install() {
  [ "${MEMSOAK_LATEST:-0}" = 1 ] && return 0
  [ -f "$stamp" ] || return 0
  local input suffix
  for input in pyproject.toml setup.py "$lock" memsoak/agent/*.c; do
    if [ "$input" -nt "$stamp" ]; then return 0; fi
  done
  suffix="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
  for source in memsoak/agent/*.c; do
    if [ ! -f "${source%.c}$suffix" ]; then return 0; fi
  done
  return 1
}
install() {
  local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check)
  if [ "${MEMSOAK_LATEST:-0}" = 1 ]; then
    "${pip[@]}" --upgrade pip setuptools \
      && "${pip[@]}" --upgrade --upgrade-strategy eager --no-build-isolation -e ".${extras:+[$extras]}"
  else
    # The build backend comes from the lock too (no build isolation), so a new setuptools
    # release cannot change how the C extensions are built.
    "${pip[@]}" -c "$lock" pip setuptools \
      && "${pip[@]}" -c "$lock" --no-build-isolation -e ".${extras:+[$extras]}"
  fi
}
if needs_install; then
  what="${extras:+ with $extras extras}"
  if [ "${MEMSOAK_LATEST:-0}" = 1 ]; then what="$what, newest releases"; else what="$what, from $lock"; fi
  echo "memsoak: installing into $VENV (Python $memsoak_python_version$what); log in $VENV/setup.log" >&2
  if ! install > "$VENV/setup.log" 2>&1; then
    grep -iE "^error|ERROR:" "$VENV/setup.log" | tail -5 >&2 || true
    echo "memsoak: setup failed; see $VENV/setup.log" >&2
    exit 2
  fi
  touch "$stamp"
fi
