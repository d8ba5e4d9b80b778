//! The FROM-scratch image (the `Dockerfile`'s final stage around a locally built static binary)
//! runs `certdock run` as a container with `/var/run` mounted, and serves a labelled container.

mod common;

use std::time::Duration;

use common::image::{CliCleanup, docker_cli, scratch_image};
use common::mtls_client::init_crypto;
use common::process::{eventually, openssl, path_str};
use common::{ContainerSpec, TEST_LABEL, docker, unique_name};

fn label() -> String {
    format!("{}={}", TEST_LABEL.0, TEST_LABEL.1)
}

#[tokio::test]
async fn certdock_run_in_the_scratch_image_serves_a_labelled_container() {
    init_crypto();
    let image = scratch_image();
    let d = docker().await;
    let mut cleanup = CliCleanup::default();
    let prefix = common::unique_label_prefix();
    let state = unique_name();
    docker_cli(&["volume", "create", "--label", &label(), &state]);
    cleanup.volumes.push(state.clone());
    let out = tempfile::tempdir().expect("output dir");
    let name = unique_name();
    cleanup.containers.push(name.clone());
    let state_volume = format!("{state}:/var/lib/certdock");
    let out_volume = format!("{}:/var/lib/certdock/out", path_str(out.path()));
    run_certdock(
        &image,
        &name,
        &prefix,
        &["--volume", &state_volume, "--volume", &out_volume],
    );

    let client = ContainerSpec::default()
        .label(&format!("{prefix}.enable"), "true")
        .label(&format!("{prefix}.name"), "scratch-client")
        .label(&format!("{prefix}.usage"), "client")
        .run(&d)
        .await;
    let cert = cert_in(&d, &client).await;
    // Without `pid: host` the container's processes are out of sight: the archive API delivered
    // (tar keeps whole seconds).
    assert!(mtime_of_cert(&d, &client).await.ends_with(".000000000"));
    let work = tempfile::tempdir().expect("tempdir");
    let cert_file = work.path().join("cert.pem");
    std::fs::write(&cert_file, cert).expect("write cert");
    // The output bind mount holds the CA the certificate verifies against, and Traefik's file.
    let ca = out.path().join("ca.pem");
    eventually(
        "ca.pem in the output mount",
        Duration::from_secs(10),
        || async { ca.is_file().then_some(()) },
    )
    .await;
    let verify = openssl(&[
        "verify",
        "-CAfile",
        path_str(&ca),
        "-purpose",
        "sslclient",
        path_str(&cert_file),
    ]);
    assert!(
        verify.status.success(),
        "the delivered certificate verifies against OUT/ca.pem: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let yml = out.path().join("traefik/certdock.yml");
    let text = eventually("traefik/certdock.yml", Duration::from_secs(10), || async {
        std::fs::read_to_string(&yml).ok()
    })
    .await;
    assert!(
        text.contains("/var/lib/certdock/out/ca.pem"),
        "paths as the container sees them (no --traefik-out-dir given):\n{text}"
    );
    let running = docker_cli(&["inspect", "--format", "{{.State.Running}}", &name]);
    assert_eq!(running, "true", "certdock is still running");
    drop(client);
}

/// `certdock run` from `image` as container `name`, serving only `prefix`'s containers (other
/// tests run certdock on the same engine), with `extra` options for `docker run`.
fn run_certdock(image: &str, name: &str, prefix: &str, extra: &[&str]) {
    let mut args = vec!["run", "--detach", "--name", name, "--label"];
    let label = label();
    args.push(&label);
    // Root for the Docker socket (root:docker 0660), as the compose files say; the directory,
    // not the socket file: a daemon restart recreates the socket.
    args.extend(["--user", "0:0", "--volume", "/var/run:/var/run"]);
    args.extend(extra);
    args.extend([
        image,
        "run",
        "--resync-interval",
        "5s",
        "--label-prefix",
        prefix,
    ]);
    docker_cli(&args);
}

/// The certificate delivered into `c`, waited for.
async fn cert_in(d: &certdock::docker::Docker, c: &common::TestContainer) -> String {
    eventually(
        "the labelled container's certificate",
        Duration::from_secs(30),
        || async {
            let (code, text) = c.exec(d, &["cat", "/run/certdock/cert.pem"]).await;
            (code == 0 && text.contains("BEGIN CERTIFICATE")).then_some(text)
        },
    )
    .await
}

/// `cert.pem`'s modification time inside `c`, as `stat` prints it.
async fn mtime_of_cert(d: &certdock::docker::Docker, c: &common::TestContainer) -> String {
    let (code, out) = c
        .exec(d, &["stat", "-L", "-c", "%y", "/run/certdock/cert.pem"])
        .await;
    assert_eq!(code, 0, "{out}");
    out.trim().split(' ').nth(1).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn with_pid_host_the_image_writes_through_the_containers_root() {
    init_crypto();
    let image = scratch_image();
    let d = docker().await;
    let mut cleanup = CliCleanup::default();
    let prefix = common::unique_label_prefix();
    let name = unique_name();
    cleanup.containers.push(name.clone());
    run_certdock(&image, &name, &prefix, &["--pid", "host"]);
    let client = ContainerSpec::default()
        .label(&format!("{prefix}.enable"), "true")
        .label(&format!("{prefix}.name"), "pid-host-client")
        .run(&d)
        .await;
    cert_in(&d, &client).await;
    // Written by certdock's own process, not extracted from a tar (whole seconds).
    let mtime = mtime_of_cert(&d, &client).await;
    assert!(!mtime.ends_with(".000000000"), "{mtime}");
    drop(client);
}

#[test]
fn the_default_user_is_not_root_and_can_create_a_ca_on_a_fresh_volume() {
    let image = scratch_image();
    common::ensure_image();
    let user = docker_cli(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(user, "65532:65532");
    let mut cleanup = CliCleanup::default();
    let state = unique_name();
    docker_cli(&["volume", "create", "--label", &label(), &state]);
    cleanup.volumes.push(state.clone());
    let name = unique_name();
    cleanup.containers.push(name.clone());
    // A fresh named volume copies the image's ownership of /var/lib/certdock: writable for 65532.
    docker_cli(&[
        "run",
        "--name",
        &name,
        "--label",
        &label(),
        "--volume",
        &format!("{state}:/var/lib/certdock"),
        &image,
        "init",
    ]);
    let listing = docker_cli(&[
        "run",
        "--rm",
        "--label",
        &label(),
        "--volume",
        &format!("{state}:/state:ro"),
        "--entrypoint",
        "ls",
        common::TEST_IMAGE,
        "-ln",
        "/state",
    ]);
    assert!(
        listing.contains("65532"),
        "files owned by the default user:\n{listing}"
    );
}
