# certdock as a FROM-scratch image: one static binary, nothing else to patch.
#
#   docker build -t certdock:local .
#
# The build stage compiles a statically linked binary (glibc with crt-static, so no libc is
# needed at run time); the final stage holds only that binary, /etc/passwd, /etc/group, /tmp and
# the state and output directories. tests/scratch_image.rs builds this final stage from a locally
# built static binary (no registry) and runs `certdock run` in it against the real engine.

ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# The Rust target to build; aarch64-unknown-linux-gnu for arm64 hosts.
ARG TARGET=x86_64-unknown-linux-gnu
WORKDIR /src
COPY . .
RUN rustup target add "$TARGET" \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$TARGET" --bin certdock \
 && scripts/rootfs.sh "target/$TARGET/release/certdock" /rootfs

FROM scratch
COPY --from=build /rootfs/ /
# The directories volumes are mounted on belong to the default user, so fresh named volumes
# (which copy the image's ownership) are writable without root.
COPY --from=build --chown=65532:65532 /rootfs/var/lib/ /var/lib/
# Non-root by default. `certdock run` and `certdock agent` read the Docker socket, which is
# usually root:docker 0660: run them with `user: "0:0"`, or keep this user and add the socket's
# group with `group_add: ["<gid of /var/run/docker.sock>"]`. `certdock serve` needs no socket.
USER 65532:65532
ENV CERTDOCK_STATE_DIR=/var/lib/certdock \
    CERTDOCK_OUT_DIR=/var/lib/certdock/out
# The state (CA keys: keep it private and backed up) and the output shared with proxies.
VOLUME ["/var/lib/certdock", "/var/lib/certdock/out"]
# The HTTPS API (`run`, `serve`); put it behind a TLS-passthrough router rather than publishing it.
EXPOSE 8443
ENTRYPOINT ["/certdock"]
CMD ["run"]
