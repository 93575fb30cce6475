#!/usr/bin/env bash
# Run the test suite: `bash scripts/test.sh [pytest args...]` (2 xdist workers).
# Sets up .venv first (a no-op when it is up to date); pytest's exit code is returned as is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export VIRTUAL_ENV="$ROOT/.venv" PATH="$ROOT/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
unset PYTHONDONTWRITEBYTECODE   # cache the bytecode of what is imported (setup.sh compiles torch's only)
cd "$ROOT"
exec python -m pytest -q -n 2 --durations=15 "$@"
