#!/usr/bin/env bash
# Runs Easel's test suite, setting up .venv (with the dev tools) the same way as ./easel.sh.
set -euo pipefail
cd "$(dirname "$0")"
EASEL_EXTRAS=dev ./easel.sh setup
exec "${EASEL_VENV:-.venv}/bin/python" -m pytest -q "$@"
