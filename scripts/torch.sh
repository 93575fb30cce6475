# Sourced by setup.sh and lock.sh: install_torch PYTHON PIN installs torch into PYTHON's venv with pip
# (install_torch_uv, below: with uv).
#   default      the CPU build of PIN (e.g. torch==2.13.0): a local wheel when pip's find-links
#                has one (dependencies then from the index), else the PyTorch CPU index. Plain
#                PyPI is never asked first: on Linux it serves a multi-GB CUDA build.
#   ADLIB_TORCH  any other pip spec, e.g. for a GPU:
#                ADLIB_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
install_torch() {
    local py="$1" pin="$2"
    local -a pip=("$py" -m pip --disable-pip-version-check -q)
    if [[ -n "${ADLIB_TORCH:-}" ]]; then
        local -a spec
        read -r -a spec <<<"$ADLIB_TORCH"
        "${pip[@]}" install "${spec[@]}"
    elif "${pip[@]}" install --no-index --no-deps "$pin" >/dev/null 2>&1; then
        "${pip[@]}" install "$pin"   # the local wheel is installed; now its dependencies
    else
        "${pip[@]}" install "$pin" --index-url https://download.pytorch.org/whl/cpu
    fi
}

# install_torch_uv UV PYTHON PIN: the same choice with uv (seconds instead of pip's half minute),
# without dependencies (setup.sh installs them from the lock next): the local wheel from pip's
# find-links (PIP_FIND_LINKS, else pip's configured global or install find-links), else the
# PyTorch CPU index. Fails (status 1) where uv cannot, or when ADLIB_TORCH names a pip spec:
# setup.sh then calls install_torch.
install_torch_uv() {
    local uv="$1" py="$2" pin="$3" links l key
    [[ -z "${ADLIB_TORCH:-}" ]] || return 1
    links="${PIP_FIND_LINKS:-}"
    for key in global.find-links install.find-links; do
        [[ -n "$links" ]] || links="$("$py" -m pip config get "$key" 2>/dev/null || true)"
    done
    local -a uvpip=("$uv" pip install --quiet --compile-bytecode --python "$py" --no-deps) fl=() words=()
    read -r -a words <<<"$links"
    for l in "${words[@]+"${words[@]}"}"; do fl+=(--find-links "$l"); done
    if [[ ${#fl[@]} -gt 0 ]] && "${uvpip[@]}" --no-index "${fl[@]}" "$pin" >/dev/null 2>&1; then
        return 0
    fi
    "${uvpip[@]}" "$pin" --index-url https://download.pytorch.org/whl/cpu
}
