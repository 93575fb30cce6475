#!/usr/bin/env bash
# Regenerate requirements.lock: resolve pyproject.toml's dependencies (with the test extra) in a
# throwaway venv and freeze the exact versions. Run by hand after changing dependencies, then
# run the tests (bash scripts/test.sh) and commit the lock with the change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"${ADLIB_PYTHON:-python3}" -m venv "$TMP/venv"
PIP=("$TMP/venv/bin/python" -m pip --disable-pip-version-check -q)
torch_pin="$(grep -E '^torch==' "$ROOT/requirements.lock" 2>/dev/null || echo 'torch==2.13.0')"
source "$ROOT/scripts/torch.sh"
install_torch "$TMP/venv/bin/python" "$torch_pin"
"${PIP[@]}" install "$ROOT[test]"
{
    echo "# Exact versions the test suite passes with; installed by scripts/setup.sh."
    echo "# Regenerate with: bash scripts/lock.sh"
    "${PIP[@]}" freeze --exclude-editable | grep -v -E '^(adlib([= @]|$)|nvidia-|triton)' | sed -E 's/^(torch==[^+]+)\+.*/\1/'
} >"$ROOT/requirements.lock"
echo "wrote $ROOT/requirements.lock ($(grep -c '==' "$ROOT/requirements.lock") packages)"
