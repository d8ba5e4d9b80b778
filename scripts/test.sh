#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs them.
# Usage: ./scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the tests talk to (Debian packages); installed only when missing.
need=()
for pkg in openssl curl caddy haproxy busybox-static faketime; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "installing: ${need[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The local test image (no registry here): built from busybox-static.
if [ -x tests/images/build.sh ]; then
    tests/images/build.sh
fi

# helm v4 for the Helm chart tests (tests/helm_chart.rs), into .tools/bin.
scripts/install-helm.sh >/dev/null

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
exec cargo nextest run --all-targets --no-fail-fast "$@"
