//! `certdock run` and a container whose delivery directory lies on a tmpfs: Docker's archive API
//! would copy the files beneath the tmpfs, where the container never sees them, and call it done.
//! certdock refuses instead, says why in `status`, and serves the container beside it.

mod common;

use std::time::Duration;

use common::process::{Certdock, eventually};
use common::{ContainerSpec, docker};

#[tokio::test]
async fn a_delivery_directory_on_a_tmpfs_is_an_error_in_status_not_a_silent_delivery() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = docker().await;
    let cd = Certdock::start(
        "run",
        &["--listen", "127.0.0.1:0", "--resync-interval", "3s"],
        &[],
    );
    let hidden = ContainerSpec::default()
        .tmpfs("/run")
        .label("certdock.enable", "true")
        .label("certdock.name", "on-tmpfs")
        .run(&d)
        .await;
    let beside = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "beside-tmpfs")
        .run(&d)
        .await;

    let entry = cd
        .status_error_of(&hidden.name, Duration::from_secs(20))
        .await;
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/run/certdock") && error.contains("tmpfs mounted at /run"),
        "{entry}"
    );
    eventually(
        "the other container served",
        Duration::from_secs(20),
        || async {
            let (code, out) = beside.exec(&d, &["cat", "/run/certdock/cert.pem"]).await;
            (code == 0 && out.contains("BEGIN CERTIFICATE")).then_some(())
        },
    )
    .await;
    drop(cd);
}
