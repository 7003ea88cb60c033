#!/usr/bin/env bash
# Easel launcher (like the web UI's webui.sh): sets up .venv on first use, then runs `python main.py "$@"`.
#   ./easel.sh                                   start the Discord bot (needs EASEL_DISCORD_TOKEN)
#   ./easel.sh setup                             only create .venv and install
#   ./easel.sh imagine "a red circle on a blue background" --seed 42 --out out.png
#   ./easel.sh worker                            a GPU worker for a bot elsewhere (needs EASEL_REDIS_URL)
#   ./easel.sh torch-choice                      say which torch build setup would install here, and why
# torch is pinned to 2.13.0: the CUDA build where an NVIDIA GPU is found, else the CPU build (a local wheel where
# pip finds one, else PyTorch's CPU index), so a CPU-only machine never downloads several GB of CUDA libraries.
# EASEL_TORCH_INDEX=<index url> overrides the choice.
set -euo pipefail
cd "$(dirname "$0")"
venv=${EASEL_VENV:-.venv}
python=${PYTHON:-python3}
extras=${EASEL_EXTRAS:-}
torch_version=2.13.0
cpu_index=https://download.pytorch.org/whl/cpu

has_nvidia_gpu() {
    [ -e /proc/driver/nvidia/version ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
}

torch_choice() {
    if [ -n "${EASEL_TORCH_INDEX:-}" ]; then
        echo "index: torch $torch_version from EASEL_TORCH_INDEX ($EASEL_TORCH_INDEX)"
    elif has_nvidia_gpu; then
        echo "cuda: an NVIDIA GPU is here: torch $torch_version with CUDA (several GB of NVIDIA libraries)"
    else
        echo "cpu: no NVIDIA GPU found: torch $torch_version's CPU build (a 190 MB wheel)"
    fi
}

install_torch() {
    local choice
    choice=$(torch_choice)
    echo "easel: ${choice#*: }" >&2
    case "$choice" in
        index:*) "$venv/bin/python" -m pip install -q "torch==$torch_version" --index-url "$EASEL_TORCH_INDEX" ;;
        cuda:*) "$venv/bin/python" -m pip install -q "torch==$torch_version" ;;
        cpu:*)
            # A CPU wheel pip can already reach offline (a wheel folder, a local mirror) first; else PyTorch's
            # CPU index. Either way never PyPI's default build, which on Linux is the CUDA one.
            local wheels
            wheels=$(mktemp -d)
            if "$venv/bin/python" -m pip download -q --no-index --no-deps -d "$wheels" "torch==$torch_version" \
                >/dev/null 2>&1 && compgen -G "$wheels/torch-*+cpu-*.whl" >/dev/null; then
                "$venv/bin/python" -m pip install -q "$wheels"/torch-*+cpu-*.whl
            else
                "$venv/bin/python" -m pip install -q "torch==$torch_version" --index-url "$cpu_index"
            fi
            rm -rf "$wheels" ;;
    esac
}

if [ "${1:-}" = "torch-choice" ]; then
    torch_choice
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "easel: creating $venv" >&2
    "$python" -m venv "$venv"
fi
stamp="$venv/.easel-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "easel: installing dependencies into $venv (first run only)" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    install_torch
    "$venv/bin/python" -m pip install -q -e ".${extras:+[$extras]}"
    touch "$stamp"
fi
export HF_HUB_DISABLE_TELEMETRY=1
if [ "${1:-}" = "setup" ]; then
    exit 0  # ./easel.sh setup: install only (used by ./test.sh)
fi
exec "$venv/bin/python" main.py "$@"
