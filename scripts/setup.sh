#!/usr/bin/env bash
# Set up .venv with the locked dependency versions (idempotent: a no-op when nothing changed).
#
#   requirements.lock  exact versions the test suite passes with (torch included): the one
#                      place that pins versions; pyproject.toml keeps ranges for library users.
#   torch              installed first, so that pip never pulls a multi-GB CUDA build: the CPU
#                      build of the locked version (a local wheel if pip's find-links has one,
#                      else the PyTorch CPU index). For a GPU, name a build with ADLIB_TORCH:
#                      ADLIB_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
#   ADLIB_PYTHON       interpreter for a new .venv (default: python3, >= 3.10)
#
# Regenerate the lock after changing dependencies: bash scripts/lock.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
LOCK="$ROOT/requirements.lock"
UV_VERSION="0.13.9"   # the installer; not a dependency of the project
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || die "$ROOT is not a git clone (DVC needs one): git clone the repository"

if [[ ! -x "$VENV/bin/python" ]]; then
    "${ADLIB_PYTHON:-python3}" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "Python >= 3.10 needed (set ADLIB_PYTHON=/path/to/python3.x)"
    "${ADLIB_PYTHON:-python3}" -m venv "$VENV" || die "could not create .venv (Debian/Ubuntu: apt-get install python3-venv)"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

stamp="$(cat "$LOCK" "$ROOT/pyproject.toml"; echo "${ADLIB_TORCH:-}" "$UV_VERSION"; "$VENV/bin/python" -V)"
if [[ -f "$VENV/.adlib-stamp" && "$(cat "$VENV/.adlib-stamp")" == "$stamp" ]]; then
    exit 0
fi

echo "[setup] installing the locked dependencies into .venv" >&2
source "$ROOT/scripts/torch.sh"
torch_pin="$(grep -E '^torch==' "$LOCK")"
# uv installs the same locked versions in seconds instead of pip's minute; pip if uv cannot be had.
# torch goes first (its CPU build: torch.sh), so that resolving the lock never fetches another build.
# Bytecode: uv writes no .pyc files where pip does. torch's are compiled here (torch.sh: 2 s, and
# every process imports torch); the rest's 11,700 modules, of which a run imports a tenth, are not
# (12 s): repro.sh and test.sh let Python write the .pyc of what their processes import, once, even
# where PYTHONDONTWRITEBYTECODE is set (this machine, many CI images).
if "${PIP[@]}" install "uv==$UV_VERSION" && "$VENV/bin/uv" --version >/dev/null 2>&1; then
    install_torch_uv "$VENV/bin/uv" "$VENV/bin/python" "$torch_pin" || install_torch "$VENV/bin/python" "$torch_pin"
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r "$LOCK"
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e "$ROOT"
else
    install_torch "$VENV/bin/python" "$torch_pin"
    "${PIP[@]}" install -r "$LOCK"
    "${PIP[@]}" install --no-deps -e "$ROOT"
fi
printf '%s' "$stamp" >"$VENV/.adlib-stamp"
echo "[setup] ready: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)')" >&2
