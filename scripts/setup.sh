#!/usr/bin/env bash
# One-step set-up on a fresh machine: .venv with the pinned stack, the project (editable, test extras)
# and the reference bellhop.exe. Re-running is fast: each step is skipped when its inputs are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi

extras=${ACOUSTIC_INV_EXTRAS:-test}
stamp=.venv/.acoustic-inv-setup
want=$( (cat pyproject.toml constraints.txt scripts/setup.sh; echo "$extras") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned stack (constraints.txt) and acoustic-inv[$extras]"
  .venv/bin/python -m pip install -q --disable-pip-version-check "pip>=24"
  # torch==2.13.0 is pinned in pyproject: the CPU wheel on this disk; an unpinned torch pulls CUDA.
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[$extras]"
  echo "$want" > "$stamp"
else
  echo "setup: Python environment up to date"
fi

bash scripts/install_bellhop.sh
