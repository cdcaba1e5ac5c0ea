# Sourced by the other scripts: which Python and which virtual environment this checkout uses.
#   PYTHON          the interpreter (default python3); a name pyenv knows but has not put on PATH
#                   (python3.13 beside a global 3.11) is found in pyenv's versions
#   MEMSOAK_LATEST  1: the newest releases instead of requirements/lock.txt, in a venv of its own
# Sets MEMSOAK_PYTHON (a path) and VENV: .venv for the default interpreter, .venv-X.Y for PYTHON=...,
# with -latest appended for the newest releases, so each combination keeps its own installed state.

memsoak_resolve_python() {
  local name="$1" root version
  if command -v "$name" > /dev/null 2>&1 && "$name" -c '' > /dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  if command -v pyenv > /dev/null 2>&1; then
    root="$(pyenv root)"
    for version in $(pyenv versions --bare 2>/dev/null | sort -rV); do
      if [ -x "$root/versions/$version/bin/$name" ]; then
        echo "$root/versions/$version/bin/$name"
        return 0
      fi
    done
  fi
  return 1
}

if ! MEMSOAK_PYTHON="$(memsoak_resolve_python "${PYTHON:-python3}")"; then
  echo "memsoak: no Python called '${PYTHON:-python3}' here (on PATH or in pyenv's versions)" >&2
  exit 2
fi
memsoak_python_version="$("$MEMSOAK_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$memsoak_python_version" in
  3.11 | 3.12 | 3.13) ;;
  *)
    echo "memsoak: supports Python 3.11, 3.12 and 3.13; ${PYTHON:-python3} is $memsoak_python_version" >&2
    exit 2
    ;;
esac
VENV=".venv"
if [ -n "${PYTHON:-}" ]; then VENV=".venv-$memsoak_python_version"; fi
if [ "${MEMSOAK_LATEST:-0}" = 1 ]; then VENV="$VENV-latest"; fi
