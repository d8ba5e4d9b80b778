//! Orders beyond the common path, against the real server: an `ip` identifier (RFC 8738), the
//! identifiers refused at newOrder, finalize too early, and External Account Binding refusals.

mod common;

use ring::hmac;
use serde_json::json;

use common::acme_client::{
    Client, b64, ready_order, register, responder, responder_on, start, start_with,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_identifier_is_validated_with_http_01_and_certified_as_an_ip_san() {
    let (_dir, serve, http) = start().await;
    let mut c = Client::new(&serve);
    register(&mut c).await;
    let a = c
        .post(
            &c.url("new-order"),
            Some(&json!({"identifiers": [{"type": "ip", "value": "127.0.0.2"}]})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let authz = c
        .post(a.body["authorizations"][0].as_str().unwrap(), None)
        .await
        .body;
    let kinds: Vec<&str> = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ch| ch["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["http-01"], "no tls-alpn-01 for an address");
    let tokens = responder_on("127.0.0.2", http).await;
    let ch = &authz["challenges"][0];
    let token = ch["token"].as_str().unwrap();
    tokens
        .lock()
        .unwrap()
        .insert(token.into(), format!("{token}.{}", c.thumbprint()));
    let v = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(v.body["status"], "valid", "{}", v.text);

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::IpAddress("127.0.0.2".parse().unwrap())];
    let csr = b64(params.serialize_request(&key).unwrap().der());
    let f = c
        .post(
            a.body["finalize"].as_str().unwrap(),
            Some(&json!({"csr": csr})),
        )
        .await;
    assert_eq!(f.body["status"], "valid", "{}", f.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_identifiers_and_an_early_finalize_have_their_problem_types() {
    let (_dir, serve, http) = start().await;
    let mut c = Client::new(&serve);
    register(&mut c).await;
    let order = |id: serde_json::Value| json!({ "identifiers": [id] });
    for (id, want) in [
        (
            json!({"type": "dns", "value": "*.example.com"}),
            "rejectedIdentifier",
        ),
        (
            json!({"type": "dns", "value": "ca.test"}),
            "rejectedIdentifier",
        ),
        (
            json!({"type": "dns", "value": "bad name"}),
            "rejectedIdentifier",
        ),
        (
            json!({"type": "email", "value": "a@b.c"}),
            "unsupportedIdentifier",
        ),
    ] {
        let a = c.post(&c.url("new-order"), Some(&order(id.clone()))).await;
        assert_eq!(a.problem(), want, "{id}: {}", a.text);
    }
    let a = c
        .post(
            &c.url("new-order"),
            Some(&order(json!({"type": "dns", "value": "localhost"}))),
        )
        .await;
    let f = c
        .post(
            a.body["finalize"].as_str().unwrap(),
            Some(&json!({"csr": "AA"})),
        )
        .await;
    assert_eq!(
        (f.status, f.problem()),
        (403, "orderNotReady"),
        "{}",
        f.text
    );
    // Another account cannot read it.
    let mut other = Client::new(&serve);
    register(&mut other).await;
    let r = other.post(a.location.as_deref().unwrap(), None).await;
    assert_eq!(r.problem(), "unauthorized", "{}", r.text);
    let tokens = responder(http).await;
    ready_order(&c, &tokens, "localhost").await;
}

fn eab(c: &Client, kid: &str, mac_key: &[u8]) -> serde_json::Value {
    let protected = b64(
        json!({"alg": "HS256", "kid": kid, "url": c.url("new-account")})
            .to_string()
            .as_bytes(),
    );
    let payload = b64(c.jwk().to_string().as_bytes());
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, mac_key),
        format!("{protected}.{payload}").as_bytes(),
    );
    json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_eab_required_a_missing_or_forged_binding_is_refused_and_spends_nothing() {
    let (_dir, serve, _) = start_with(&["--acme-eab", "true"]).await;
    let printed = tokio::task::spawn_blocking({
        let state = serve.state.clone();
        move || {
            common::ok(&common::certdock(&[
                "token",
                "create",
                "--state-dir",
                common::s(&state),
                "--kind",
                "acme",
                "--name",
                "w",
            ]))
        }
    })
    .await
    .unwrap();
    let field = |k: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    let (kid, hmac_key) = (field("kid="), field("hmac="));
    let mac = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &hmac_key)
        .unwrap();
    let c = Client::new(&serve);
    let url = c.url("new-account");
    let a = c.post(&url, Some(&json!({}))).await;
    assert_eq!(
        (a.status, a.problem()),
        (401, "externalAccountRequired"),
        "{}",
        a.text
    );
    let a = c
        .post(
            &url,
            Some(&json!({"externalAccountBinding": eab(&c, &kid, b"wrong key")})),
        )
        .await;
    assert_eq!(a.problem(), "unauthorized", "{}", a.text);
    let a = c
        .post(
            &url,
            Some(&json!({"externalAccountBinding": eab(&c, &kid, &mac)})),
        )
        .await;
    assert_eq!(
        a.status, 201,
        "the forged attempt did not spend the token: {}",
        a.text
    );
}
