#!/usr/bin/env bash
# Sets up rltf in .venv at the repository root: torch==2.13.0 first (a CPU build where one is
# available; pyproject's torch range accepts it, so nothing pulls another build), then the
# project with its dev extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"rltf needs Python 3.10 or newer, found {sys.version.split()[0]}")
PY
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "rltf is installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
