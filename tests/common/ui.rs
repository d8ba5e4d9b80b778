//! A CA with something to show: certificates from `certdock issue`, a revoked one, an enrolled
//! agent and a status file as the controller writes it (one container, one refusal).

use std::fs;

use serde_json::json;

use super::serve::{Serve, body_file, certdock, ok, openssl_csr, s, save_cert, x509};

/// The names the populated CA shows as certificate rows.
pub const CERT_NAMES: [&str; 3] = ["zeta-web", "zeta-ops", "zeta-container"];
/// The refused container's name.
pub const REFUSED: &str = "zeta-refused";
pub const AGENT: &str = "zeta-agent";

/// `certdock issue` against the server's state directory.
pub fn issue(serve: &Serve, args: &[&str]) -> String {
    let mut all = vec!["issue", "--state-dir", s(&serve.state)];
    all.extend_from_slice(args);
    ok(&certdock(&all))
}

/// Fills the CA: `zeta-web` (server), `zeta-ops` (an admin's client certificate, in
/// `DIR/ops/`), `zeta-gone` (revoked), the agent `zeta-agent`, and a status.json in the
/// controller's form with the container `zeta-container` and the refused `zeta-refused`.
pub fn populate(serve: &Serve) {
    let d = &serve.dir;
    issue(
        serve,
        &["zeta-web", "--san", "10.9.8.7", "--usage", "server"],
    );
    let ops = d.join("ops");
    issue(
        serve,
        &["zeta-ops", "--usage", "client", "--admin", "--out", s(&ops)],
    );
    let gone = d.join("gone");
    issue(
        serve,
        &["zeta-gone", "--usage", "server", "--out", s(&gone)],
    );
    let serial = x509(&gone.join("cert.pem"), &["-serial"]);
    let serial = serial.trim().trim_start_matches("serial=");
    ok(&certdock(&[
        "revoke",
        "--state-dir",
        s(&serve.state),
        serial,
    ]));
    let token = serve.token("agent", AGENT, &["--allow-domain", "agents.test"]);
    let (_, csr) = openssl_csr(d, "agent", AGENT, &[]);
    let body = body_file(d, "enrol", &json!({"csr": csr, "enrol": true}));
    let auth = format!("Authorization: Bearer {token}");
    let data = format!("@{}", body.display());
    let (code, answer) = serve.curl(
        &[
            "/v1/sign",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data",
            &data,
        ],
        &[],
    );
    assert_eq!(code, 200, "{answer}");
    save_cert(d, "agent", &answer);
    let status = json!([
        {"name": "zeta-container", "container": "zeta-container-1", "sans": ["zeta-container"],
         "usage": "server", "serial": "0a0b", "not_after": "2099-01-01T00:00:00Z",
         "next_renewal": "2098-06-01T00:00:00Z", "error": null},
        {"name": REFUSED, "container": "zeta-refused-1", "sans": [], "usage": "",
         "serial": null, "not_after": null, "next_renewal": null,
         "error": "label certdock.ttl: 1x is not a duration"}
    ]);
    fs::write(serve.state.join("status.json"), status.to_string()).expect("status.json");
}

/// What `certdock status --json` prints for the server's state directory.
pub fn status_json(serve: &Serve) -> serde_json::Value {
    let out = ok(&certdock(&[
        "status",
        "--json",
        "--state-dir",
        s(&serve.state),
    ]));
    serde_json::from_str(&out).expect("status --json is JSON")
}

/// The certificate rows a page or a status JSON must show, and the one refusal.
pub fn listed_names(status: &serde_json::Value) -> Vec<String> {
    status
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}
