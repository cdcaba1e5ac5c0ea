#!/usr/bin/env bash
# The main job: set up, then hunt the leak in the built-in seed target (10,000 requests).
# Any `memsoak run` option may follow, e.g. scripts/hunt.sh --app targets.seed_fixed.app:app
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/venv.sh
exec "$VENV/bin/memsoak" run "$@"
