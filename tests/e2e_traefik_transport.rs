//! Traefik's side, without Traefik: the `certdock` serversTransport in `traefik/certdock.yml`
//! names a CA bundle and a client certificate that real backends requiring mTLS (HAProxy and
//! Caddy) accept, exactly as Traefik would present them; without that certificate they refuse.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::mtls_client::{Identity, Target, get, init_crypto, is_ok};
use common::peers::{caddy_with_mtls_snippet, haproxy_pem, haproxy_with_mtls, issue_server_cert};
use common::process::{Certdock, eventually};
use serde_json::Value;

/// The files `http.serversTransports.certdock` names: (rootCAs[0], certFile, keyFile).
fn transport_files(yml: &Value) -> (PathBuf, PathBuf, PathBuf) {
    let t = &yml["http"]["serversTransports"]["certdock"];
    let path = |v: &Value| PathBuf::from(v.as_str().unwrap_or_else(|| panic!("a path: {t}")));
    let cert = &t["certificates"][0];
    (
        path(&t["rootCAs"][0]),
        path(&cert["certFile"]),
        path(&cert["keyFile"]),
    )
}

#[tokio::test]
async fn backends_requiring_mtls_accept_the_certificate_the_certdock_transport_names() {
    init_crypto();
    // A label prefix no container has: this certdock serves no container on the engine.
    let prefix = common::unique_label_prefix();
    let cd = Certdock::start(
        "run",
        &["--listen", "127.0.0.1:0", "--label-prefix", &prefix],
        &[],
    );
    let yml_path = cd.out.join("traefik/certdock.yml");
    let yml: Value = eventually(
        "certdock.yml with the transport's client certificate",
        Duration::from_secs(20),
        || async {
            let text = std::fs::read_to_string(&yml_path).ok()?;
            let v: Value = serde_saphyr::from_str(&text).expect("certdock.yml is YAML");
            v["http"]["serversTransports"]["certdock"]["certificates"][0]["certFile"]
                .is_string()
                .then_some(v)
        },
    )
    .await;
    let (root_ca, cert_file, key_file) = transport_files(&yml);
    // Paths are as Traefik sees them; here Traefik would mount OUT at the same path.
    for p in [&root_ca, &cert_file, &key_file] {
        assert!(p.starts_with(&cd.out), "{} is under OUT", p.display());
        assert!(p.is_file(), "{} exists", p.display());
    }
    assert_eq!(root_ca, cd.out.join("ca.pem"));
    // The TCP transport (for TCP routers to TLS backends) names the same files.
    let tcp = &yml["tcp"]["serversTransports"]["certdock"]["tls"];
    assert_eq!(tcp["rootCAs"][0].as_str(), root_ca.to_str());
    assert_eq!(
        tcp["certificates"][0]["certFile"].as_str(),
        cert_file.to_str()
    );
    assert_eq!(
        tcp["certificates"][0]["keyFile"].as_str(),
        key_file.to_str()
    );
    let traefik = Identity::from_files(&cert_file, &key_file);
    assert_eq!(traefik.chain.len(), 2, "fullchain: leaf and intermediate");

    let work = tempfile::tempdir().expect("tempdir");
    let server = issue_server_cert(&cd.state, "backend-e2e", &work.path().join("server"));
    let hap_dir = work.path().join("haproxy");
    let caddy_dir = work.path().join("caddy");
    std::fs::create_dir_all(&hap_dir).unwrap();
    std::fs::create_dir_all(&caddy_dir).unwrap();
    let pem = haproxy_pem(&server, &hap_dir.join("server.pem"));
    let haproxy = haproxy_with_mtls(&hap_dir, &pem, &cd.out.join("ca.pem"));
    let caddy = caddy_with_mtls_snippet(
        &caddy_dir,
        &cd.out.join("caddy/mtls.caddy"),
        &server.join("fullchain.pem"),
        &server.join("key.pem"),
    );

    for (name, port) in [("haproxy", haproxy.port), ("caddy", caddy.port)] {
        // The backend is verified with the transport's rootCAs, as Traefik does.
        let target = Target::new(port, "localhost", &root_ca);
        let with = get(&target, Some(&traefik)).await;
        assert!(
            is_ok(&with),
            "{name} accepts Traefik's certificate: {with:?}"
        );
        let without = get(&target, None).await;
        assert!(
            without.is_err(),
            "{name} refuses a Traefik without it: {without:?}"
        );
        let foreign = get(&target, Some(&Identity::foreign())).await;
        assert!(
            foreign.is_err(),
            "{name} refuses a foreign certificate: {foreign:?}"
        );
    }
}
