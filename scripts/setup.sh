#!/usr/bin/env bash
# Idempotent setup of a fresh clone (or an unpacked tarball) of adlib:
#   1. .venv with python3 (>= 3.10), created if missing;
#   2. torch installed FIRST, so that pip never pulls a multi-GB CUDA build by accident:
#        default        torch==2.13.0 as a CPU wheel from this machine's local wheels
#                       (pip's find-links), else from the PyTorch CPU index;
#        ADLIB_TORCH    any other pip spec, e.g. for a GPU machine
#                       ADLIB_TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
#      then `pip install -e ".[test]"` (torch is then already satisfied and left alone);
#      both are skipped while a stamp in .venv shows pyproject.toml, the python and
#      ADLIB_TORCH unchanged;
#   3. the folder is a git repository (`git init` + an initial commit if it is not);
#   4. DVC is initialised, with analytics off.
# Environment: ADLIB_PYTHON (interpreter for a new .venv), ADLIB_TORCH (see above),
# ADLIB_SETUP_FORCE=1 (reinstall even if the stamp matches).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
STAMP="$VENV/.adlib-setup-stamp"
TORCH_DEFAULT="torch==2.13.0"
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"
export DVC_NO_ANALYTICS=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

cd "$ROOT"

# One setup at a time per checkout (a test run and a repro started together would race).
if command -v flock >/dev/null 2>&1; then
    lock="${TMPDIR:-/tmp}/adlib-setup-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1).lock"
    exec 9>"$lock"
    flock 9
fi

# --- 1. virtual environment ------------------------------------------------------------
py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1; }

if [[ -x "$VPY" ]] && ! py_ok "$VPY"; then
    log ".venv is broken or its python is older than 3.10: recreating it"
    rm -rf "$VENV"
fi
if [[ ! -x "$VPY" ]]; then
    base=""
    for cand in ${ADLIB_PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10; do
        if command -v "$cand" >/dev/null 2>&1 && py_ok "$cand"; then base="$cand"; break; fi
    done
    [[ -n "$base" ]] || die "no python >= 3.10 found (set ADLIB_PYTHON=/path/to/python3.x)"
    log "creating .venv with $("$base" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$base" -m venv "$VENV" || die "'$base -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
fi

# pip, minus one harmless warning per package that some machines' pip config causes (an
# extra-index-url pointing at a partial local mirror); every other message goes through.
pip_() {
    { "$VPY" -m pip --disable-pip-version-check "$@" 2>&1 1>&3 3>&- |
        { grep -v -e "is ignored: it is neither a file nor a directory" || true; } >&2; } 3>&1
}

stamp="$(
    {
        cat "$ROOT/pyproject.toml"
        printf 'root=%s\ntorch=%s\n' "$ROOT" "${ADLIB_TORCH:-}"
        "$VPY" -c 'import sys; print(sys.version)'
    } | "$VPY" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
)"

# cheap checks only (no torch import): this runs before every test and repro
installed_ok() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$stamp" && -x "$VENV/bin/dvc" ]] &&
        "$VPY" -I -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("adlib") and u.find_spec("torch")))' \
            >/dev/null 2>&1
}
torch_version() { "$VPY" -I -c 'import importlib.metadata as m; print("torch", m.version("torch"))' 2>/dev/null; }

install_torch() {
    local prev_spec=""
    [[ -f "$VENV/.adlib-torch-spec" ]] && prev_spec="$(cat "$VENV/.adlib-torch-spec")"
    if [[ -n "${ADLIB_TORCH:-}" ]]; then
        local -a spec
        read -r -a spec <<<"$ADLIB_TORCH"
        if [[ "$ADLIB_TORCH" != "$prev_spec" ]] && "$VPY" -I -c 'import torch' >/dev/null 2>&1; then
            log "ADLIB_TORCH changed: replacing $(torch_version)"
            pip_ uninstall -q -y torch
        fi
        log "installing torch: pip install ${spec[*]}"
        pip_ install -q "${spec[@]}" || die "pip install ${spec[*]} failed (check ADLIB_TORCH)"
    elif "$VPY" -I -c 'import torch' >/dev/null 2>&1; then
        log "$(torch_version) already installed: keeping it"
    elif pip_ install -q --no-index --no-deps "$TORCH_DEFAULT" >/dev/null 2>&1; then
        # a local wheel (pip's find-links) had it; now its dependencies from the index
        log "installing $TORCH_DEFAULT (local wheel) and its dependencies"
        pip_ install -q "$TORCH_DEFAULT"
    else
        # Not on local disk. Plain PyPI would give Linux a CUDA build (GBs): use the CPU index.
        log "installing $TORCH_DEFAULT from the PyTorch CPU index"
        if ! pip_ install -q "$TORCH_DEFAULT" --index-url "$TORCH_CPU_INDEX" 2>/dev/null; then
            log "$TORCH_DEFAULT is not there: installing the newest CPU torch instead"
            pip_ install -q torch --index-url "$TORCH_CPU_INDEX" ||
                die "could not install torch; set ADLIB_TORCH to a pip spec that works here"
        fi
    fi
    printf '%s' "${ADLIB_TORCH:-}" >"$VENV/.adlib-torch-spec"
}

if [[ "${ADLIB_SETUP_FORCE:-0}" != "1" ]] && installed_ok; then
    log ".venv up to date ($(torch_version))"
else
    t0=$SECONDS
    rm -f "$STAMP"
    install_torch
    log "installing adlib and its dependencies: pip install -e \".[test]\" (minutes on a new .venv)"
    pip_ install -q -e "$ROOT[test]" || die "pip install -e \".[test]\" failed"
    "$VPY" -I -c 'import adlib, torch' || die "adlib or torch does not import after the install"
    printf '%s' "$stamp" >"$STAMP"
    log "installed in $((SECONDS - t0)) s ($(torch_version))"
fi

# --- 2. git repository -----------------------------------------------------------------
command -v git >/dev/null 2>&1 || die "git is required (DVC tracks the pipeline in git)"
new_repo=0
top="$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null || true)"
if [[ -z "$top" || "$(cd "$top" && pwd -P)" != "$(pwd -P)" ]]; then
    log "not a git repository: git init"
    git init -q "$ROOT"
    new_repo=1
fi

# --- 3. DVC ------------------------------------------------------------------------------
DVC="$VENV/bin/dvc"
if [[ ! -f "$ROOT/.dvc/config" ]]; then
    log "dvc init"
    "$DVC" init -q
fi
if ! grep -qsiE '^[[:space:]]*analytics[[:space:]]*=[[:space:]]*false' "$ROOT/.dvc/config" "$ROOT/.dvc/config.local"; then
    "$DVC" config --local core.analytics false   # .dvc/config.local: not tracked by git
fi

if [[ "$new_repo" == 1 ]]; then
    if [[ -z "$(git config user.email || true)" ]]; then   # a local identity for this commit
        git config user.name "adlib setup"
        git config user.email "adlib@localhost"
    fi
    git add -A
    git -c commit.gpgsign=false commit -q -m "Initial commit (scripts/setup.sh)"
    log "initial commit $(git rev-parse --short HEAD)"
fi
log "ready: $ROOT"
