#!/bin/sh
# Lays out the root filesystem of the FROM-scratch image: the static certdock binary plus the
# little a process needs: /etc/passwd and /etc/group naming the default user, a /tmp, and the
# state and output directories (owned by that user by the Dockerfile's COPY --chown, so named
# volumes start out writable for it).
# Used by the Dockerfile's build stage and by tests/scratch_image.rs, so both ship the same tree.
# Usage: scripts/rootfs.sh STATIC_BINARY DEST_DIR
set -eu
BIN="$1"
DEST="$2"
# The default non-root user, as in distroless images ("nonroot").
ID=65532

mkdir -p "$DEST/etc" "$DEST/tmp" "$DEST/var/lib/certdock/out"
cp "$BIN" "$DEST/certdock"
chmod 0755 "$DEST/certdock"
chmod 1777 "$DEST/tmp"
cat >"$DEST/etc/passwd" <<PASSWD
root:x:0:0:root:/:/certdock
nonroot:x:$ID:$ID:nonroot:/var/lib/certdock:/certdock
PASSWD
cat >"$DEST/etc/group" <<GROUP
root:x:0:
nonroot:x:$ID:
GROUP
