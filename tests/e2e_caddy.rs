//! End to end with a real Caddy: the `(mtls)` snippet certdock writes makes Caddy require a
//! certdock client certificate; a container's auto-rotated 45 s certificate keeps working across
//! rotations with zero failed requests; foreign and missing certificates are refused.

mod common;

use std::time::Duration;

use common::docker;
use common::mtls_client::{
    Identity, Target, assert_no_failures, call_through_rotations, first_identity, get, init_crypto,
    is_ok, short_lived_client,
};
use common::peers::{caddy_with_mtls_snippet, issue_server_cert};
use common::process::{Certdock, eventually};

const DIR: &str = "/run/certdock";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_with_the_snippet_serves_a_rotating_client_without_one_failed_request() {
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
    let snippet = cd.out.join("caddy/mtls.caddy");
    eventually("caddy/mtls.caddy", Duration::from_secs(20), || async {
        snippet.is_file().then_some(())
    })
    .await;
    let work = tempfile::tempdir().expect("tempdir");
    let server = issue_server_cert(&cd.state, "caddy-e2e", &work.path().join("server"));
    let mut caddy = caddy_with_mtls_snippet(
        work.path(),
        &snippet,
        &server.join("fullchain.pem"),
        &server.join("key.pem"),
    );
    let target = Target::new(caddy.port, "localhost", &cd.out.join("ca.pem"));

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
    // A client that sends no SNI falls outside the site's connection policy: Caddy completes the
    // handshake without asking for a certificate but answers 421, never the site's content.
    let no_sni = get(
        &Target {
            server_name: "127.0.0.1".into(),
            ..target.clone()
        },
        None,
    )
    .await;
    assert!(
        !is_ok(&no_sni),
        "without SNI the site is not served: {no_sni:?}"
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
    assert!(caddy.is_running(), "caddy died:\n{}", caddy.log_text());
    assert_no_failures("caddy", &report, 2);

    // Still refused after the rotations.
    assert!(get(&target, Some(&Identity::foreign())).await.is_err());
    assert!(get(&target, None).await.is_err());
    drop(client);
}
