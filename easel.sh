#!/usr/bin/env bash
# Easel launcher (like the web UI's webui.sh): sets up .venv on first use, then runs `python main.py "$@"`.
#   ./easel.sh                                   start the Discord bot (needs EASEL_DISCORD_TOKEN)
#   ./easel.sh setup                             only create .venv and install
#   ./easel.sh imagine "a red circle on a blue background" --seed 42 --out out.png
#   ./easel.sh worker                            a GPU worker for a bot elsewhere (needs EASEL_REDIS_URL)
# torch is pinned to 2.13.0. Where pip's default index gives a CUDA build (a normal Linux box) that is what GPU
# owners want; for a CPU-only machine set EASEL_TORCH_INDEX=https://download.pytorch.org/whl/cpu first.
set -euo pipefail
cd "$(dirname "$0")"
venv=${EASEL_VENV:-.venv}
python=${PYTHON:-python3}
extras=${EASEL_EXTRAS:-}

if [ ! -x "$venv/bin/python" ]; then
    echo "easel: creating $venv" >&2
    "$python" -m venv "$venv"
fi
stamp="$venv/.easel-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "easel: installing dependencies into $venv (first run only)" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    if [ -n "${EASEL_TORCH_INDEX:-}" ]; then
        "$venv/bin/python" -m pip install -q "torch==2.13.0" --index-url "$EASEL_TORCH_INDEX"
    else
        "$venv/bin/python" -m pip install -q "torch==2.13.0"
    fi
    "$venv/bin/python" -m pip install -q -e ".${extras:+[$extras]}"
    touch "$stamp"
fi
export HF_HUB_DISABLE_TELEMETRY=1
if [ "${1:-}" = "setup" ]; then
    exit 0  # ./easel.sh setup: install only (used by ./test.sh)
fi
exec "$venv/bin/python" main.py "$@"
