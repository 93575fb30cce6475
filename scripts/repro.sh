#!/usr/bin/env bash
# Run the DVC pipeline (or the stages named): `bash scripts/repro.sh [dvc repro args...]`.
# Sets up .venv first (a no-op when it is up to date), then runs `dvc repro "$@"` with the
# venv's python and dvc first on PATH, from the repository root.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
export VIRTUAL_ENV="$ROOT/.venv" PATH="$ROOT/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
unset PYTHONDONTWRITEBYTECODE   # cache the bytecode of what is imported (setup.sh compiles torch's only)
cd "$ROOT"
exec dvc repro "$@"
