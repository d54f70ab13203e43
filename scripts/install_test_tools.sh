#!/usr/bin/env bash
# Optional command-line tools some tests use, best effort: `promtool` (Debian's prometheus package)
# unit-tests the alert rules and dashboard queries; `kubectl kustomize` renders the overlays. Tests
# that need one skip with a reason when it is missing, so a failure here never fails the set-up.
set -uo pipefail
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v kubectl >/dev/null 2>&1 || missing+=(kubectl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[bootstrap] optional tools not installed (${missing[*]}): not root or no apt-get" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
for pkg in "${missing[@]}"; do
  if apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1 \
     || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1; }; then
    echo "[bootstrap] installed $pkg" >&2
  else
    echo "[bootstrap] optional package $pkg not available; the tests that need it will skip" >&2
  fi
done
# Debian's prometheus package starts its service where an init system runs; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
exit 0
