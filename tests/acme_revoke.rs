//! revokeCert against the real server: by the certificate's own key, not by a stranger's
//! account, a bad reason refused, a second revocation `alreadyRevoked`, the CRL listing it.

mod common;

use serde_json::json;

use common::acme_client::{Client, b64, finalize, ready_order, register, responder, start};
use common::{ok, run, s};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_revoked_by_its_own_key_but_not_by_a_stranger() {
    let (dir, serve, http) = start().await;
    let tokens = responder(http).await;
    let mut owner = Client::new(&serve);
    register(&mut owner).await;
    let order = ready_order(&owner, &tokens, "localhost").await;
    let (leaf, key) = finalize(&owner, &order, "localhost").await;
    let revoke = owner.url("revoke-cert");
    let cert = b64(&leaf);

    let mut stranger = Client::new(&serve);
    register(&mut stranger).await;
    let a = stranger
        .post(&revoke, Some(&json!({"certificate": cert})))
        .await;
    assert_eq!(a.problem(), "unauthorized", "{}", a.text);

    let by_key = Client::with_key(&serve, &key);
    let a = by_key
        .post(&revoke, Some(&json!({"certificate": cert, "reason": 7})))
        .await;
    assert_eq!(a.problem(), "badRevocationReason", "{}", a.text);
    let a = by_key
        .post(&revoke, Some(&json!({"certificate": cert, "reason": 1})))
        .await;
    assert_eq!(a.status, 200, "revoked by its own key: {}", a.text);

    let a = owner
        .post(&revoke, Some(&json!({"certificate": cert})))
        .await;
    assert_eq!(a.problem(), "alreadyRevoked", "{}", a.text);

    let crl = dir.path().join("crl.der");
    let (code, _) = serve.curl(&["/crl", "-o", s(&crl)], &[]);
    assert_eq!(code, 200);
    let text = ok(&run(
        "openssl",
        &["crl", "-inform", "DER", "-noout", "-text", "-in", s(&crl)],
    ));
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let serial = hex::encode_upper(parsed.raw_serial());
    assert!(text.contains(&serial), "CRL lists {serial}: {text}");
}
