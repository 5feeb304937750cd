#!/usr/bin/env bash
# One-command install into a virtual environment (default .venv; HUMANSPLAT_VENV overrides).
# torch is installed first and pinned: a bare `torch` requirement on a machine without torch pulls the
# newest CUDA build (GBs). Set HUMANSPLAT_TORCH to another spec (e.g. a CUDA build) if you want one.
# Extras: HUMANSPLAT_EXTRAS (default "photo,dev"; add "cuda" for gsplat on NVIDIA GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HUMANSPLAT_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install -q "${HUMANSPLAT_TORCH:-torch==2.13.0}"
"$venv/bin/python" -m pip install -q -e ".[${HUMANSPLAT_EXTRAS:-photo,dev}]"
echo "installed: $("$venv/bin/humansplat" --version) in $venv (activate with: . $venv/bin/activate)"
