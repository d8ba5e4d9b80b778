#!/bin/sh
# Builds the local test image certdock-test/busybox:latest without any registry: a rootfs made of
# Debian's static busybox plus its applet links and a minimal /etc, imported with `docker import`.
# Idempotent: the image carries a hash of its rootfs and is rebuilt only when that hash changes.
# Used by the integration tests (tests/common/mod.rs) and by CI. Needs: docker, tar, sha256sum.
set -eu

IMAGE="${CERTDOCK_TEST_IMAGE:-certdock-test/busybox:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

is_static() {
    # A dynamically linked busybox would not run in an empty rootfs.
    [ -x "$1" ] && ! ldd "$1" >/dev/null 2>&1
}

if ! is_static "$BUSYBOX"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build.sh: installing busybox-static" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >&2 \
            || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >&2; }
        BUSYBOX=/bin/busybox
    fi
    is_static "$BUSYBOX" || { echo "build.sh: need a static busybox at $BUSYBOX (apt-get install busybox-static)" >&2; exit 1; }
fi

# Parallel test processes may call this at once: one builds, the others wait and then skip.
LOCK="${TMPDIR:-/tmp}/certdock-test-image.lock"
exec 9>"$LOCK"
flock 9

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/root" "$ROOT/run" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$ROOT/bin/$applet"
done
mkdir -p "$ROOT/usr"
ln -s ../bin "$ROOT/usr/bin"
ln -s bin "$ROOT/sbin"
cat >"$ROOT/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$ROOT/etc/group" <<'GROUP'
root:x:0:
app:x:1000:
nogroup:x:65534:
GROUP

# A reproducible tarball (fixed order, owner and mtime), so its hash identifies the content.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2020-01-01 00:00:00Z' \
    -C "$ROOT" -cf "$WORK/rootfs.tar" .
HASH="$(sha256sum "$WORK/rootfs.tar" | cut -c1-16)"

CURRENT="$(docker image inspect -f '{{index .Config.Labels "io.certdock.test.hash"}}' "$IMAGE" 2>/dev/null || true)"
if [ "$CURRENT" = "$HASH" ]; then
    echo "build.sh: $IMAGE is up to date ($HASH)" >&2
    exit 0
fi

docker import \
    --change 'LABEL io.certdock.test=1' \
    --change "LABEL io.certdock.test.hash=$HASH" \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["sh"]' \
    "$WORK/rootfs.tar" "$IMAGE" >/dev/null
echo "build.sh: built $IMAGE ($HASH)" >&2
