//! End to end with a real HAProxy terminating TLS with `ca-file OUT/ca.pem` and `verify required`:
//! a container's auto-rotated 45 s client certificate keeps working across rotations with zero
//! failed requests; foreign and missing certificates are refused.

mod common;

use std::time::Duration;

use common::docker;
use common::mtls_client::{
    Identity, Target, assert_no_failures, call_through_rotations, first_identity, get, init_crypto,
    is_ok, short_lived_client,
};
use common::peers::{haproxy_pem, haproxy_with_mtls, issue_server_cert};
use common::process::{Certdock, eventually};

const DIR: &str = "/run/certdock";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_with_ca_pem_serves_a_rotating_client_without_one_failed_request() {
    init_crypto();
    let d = docker().await;
    // Its own label prefix: serves this test's client only, and no other certdock touches it.
    let prefix = common::unique_label_prefix();
    let cd = Certdock::start(
        "run",
        &[
            "--listen",
            "127.0.0.1:0",
            "--min-ttl",
            "30s",
            "--label-prefix",
            &prefix,
        ],
        &[],
    );
    let ca = cd.out.join("ca.pem");
    eventually("ca.pem", Duration::from_secs(20), || async {
        ca.is_file().then_some(())
    })
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let server = issue_server_cert(&cd.state, "haproxy-e2e", &work.path().join("server"));
    let pem = haproxy_pem(&server, &work.path().join("server.pem"));
    let mut haproxy = haproxy_with_mtls(work.path(), &pem, &ca);
    let target = Target::new(haproxy.port, "localhost", &ca);

    let client = short_lived_client(&d, &prefix, "client1").await;
    let first = first_identity(&d, &client, DIR).await;
    let answer = get(&target, Some(&first)).await;
    assert!(
        is_ok(&answer),
        "the delivered certificate is accepted: {answer:?}"
    );
    let foreign = get(&target, Some(&Identity::foreign())).await;
    assert!(
        foreign.is_err(),
        "a self-signed certificate is refused at the TLS layer: {foreign:?}"
    );
    let none = get(&target, None).await;
    assert!(
        none.is_err(),
        "no certificate is refused at the TLS layer: {none:?}"
    );

    let report = call_through_rotations(
        &d,
        &client,
        DIR,
        &target,
        2,
        Duration::from_secs(5),
        Duration::from_secs(150),
    )
    .await;
    assert!(
        haproxy.is_running(),
        "haproxy died:\n{}",
        haproxy.log_text()
    );
    assert_no_failures("haproxy", &report, 2);

    assert!(get(&target, Some(&Identity::foreign())).await.is_err());
    assert!(get(&target, None).await.is_err());
    drop(client);
}
