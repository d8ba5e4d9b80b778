#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs them.
# Usage: ./scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the tests talk to (Debian packages); installed only when missing.
need=()
# chromium: tests/ui_browser.rs renders the status page headless; lego and certbot: ACME clients.
for pkg in openssl curl caddy haproxy busybox-static faketime lego certbot chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# Compose for tests/compose_files.rs: the v2 plugin when present, else Debian's docker-compose.
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    need+=(docker-compose)
fi
# pip, to install check-jsonschema below when it is missing.
if ! command -v check-jsonschema >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    need+=(python3-pip)
fi
if ((${#need[@]})); then
    echo "installing: ${need[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Validates compose/ against the Compose specification (tests/compose_files.rs); it bundles the
# schema, so it works offline once installed.
CHECK_JSONSCHEMA_VERSION=0.39.0
if ! command -v check-jsonschema >/dev/null 2>&1; then
    echo "installing: check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
    # Debian's own python3 refuses system-wide installs (PEP 668) unless told otherwise.
    python3 -m pip install -q "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
fi

# The local test image (no registry here): built from busybox-static.
if [ -x tests/images/build.sh ]; then
    tests/images/build.sh
fi

# helm v4 for the Helm chart tests (tests/helm_chart.rs), into .tools/bin.
scripts/install-helm.sh >/dev/null

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
# Benches (harness = false) are run on demand by scripts/bench.sh, not listed as tests.
exec cargo nextest run --lib --bins --tests --no-fail-fast "$@"
