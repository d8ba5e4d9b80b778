//! Hostile and broken ACME requests against the real server, signed by hand: each gets its RFC
//! 8555 problem type and a fresh nonce, nothing is issued, and a retried finalize issues nothing
//! twice.

mod common;

use serde_json::json;

use common::acme_client::{Client, acme_issued, b64, csr, ready_order, register, responder, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_requests_get_their_problem_type_and_a_fresh_nonce() {
    let (_dir, serve, _) = start().await;
    let c = Client::new(&serve);
    let new_account = c.url("new-account");
    let payload = json!({"termsOfServiceAgreed": true});

    let a = c
        .raw(&new_account, b"{not json".to_vec(), "application/jose+json")
        .await;
    assert_eq!((a.status, a.problem()), (400, "malformed"), "{}", a.text);
    assert_eq!(a.content_type, "application/problem+json");
    assert!(a.nonce.is_some(), "every answer carries a nonce");

    let nonce = c.nonce().await;
    let body = c.jws(&new_account, &nonce, Some(&payload));
    let a = c.raw(&new_account, body.clone(), "application/json").await;
    assert_eq!((a.status, a.problem()), (415, "malformed"), "{}", a.text);

    let a = c
        .raw(
            &new_account,
            c.jws(&new_account, "bm9wZQ", Some(&payload)),
            "application/jose+json",
        )
        .await;
    assert_eq!((a.status, a.problem()), (400, "badNonce"), "{}", a.text);
    let fresh = a.nonce.expect("badNonce comes with a fresh nonce");
    let a = c
        .raw(
            &new_account,
            c.jws(&new_account, &fresh, Some(&payload)),
            "application/jose+json",
        )
        .await;
    assert_eq!(a.status, 201, "the fresh nonce works: {}", a.text);

    // The same signed request again: its nonce is spent.
    let a = c
        .raw(
            &new_account,
            c.jws(&new_account, &fresh, Some(&payload)),
            "application/jose+json",
        )
        .await;
    assert_eq!(
        (a.status, a.problem()),
        (400, "badNonce"),
        "replay: {}",
        a.text
    );

    let nonce = c.nonce().await;
    let elsewhere = c.jws(&c.url("new-order"), &nonce, Some(&payload));
    let a = c
        .raw(&new_account, elsewhere, "application/jose+json")
        .await;
    assert_eq!(
        (a.status, a.problem()),
        (401, "unauthorized"),
        "wrong url: {}",
        a.text
    );

    let got = c.http_get(&new_account).await;
    assert_eq!(
        (got.status, got.problem()),
        (405, "malformed"),
        "{}",
        got.text
    );

    let huge = vec![b'a'; 100 * 1024];
    let a = c.raw(&new_account, huge, "application/jose+json").await;
    assert_eq!((a.status, a.problem()), (413, "malformed"), "{}", a.text);

    let mut ghost = Client::new(&serve);
    ghost.kid = Some(format!("{}/acme/account/nobody", serve.url_ip()));
    let a = ghost
        .post(
            &c.url("new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "localhost"}]})),
        )
        .await;
    assert_eq!(
        (a.status, a.problem()),
        (400, "accountDoesNotExist"),
        "{}",
        a.text
    );

    let mut hs = Client::new(&serve);
    let nonce = hs.nonce().await;
    hs.kid = None;
    let header = b64(
        json!({"alg": "HS256", "nonce": nonce, "url": new_account, "jwk": hs.jwk()})
            .to_string()
            .as_bytes(),
    );
    let body = json!({"protected": header, "payload": "", "signature": "AAAA"}).to_string();
    let a = hs
        .raw(&new_account, body.into_bytes(), "application/jose+json")
        .await;
    assert_eq!(a.problem(), "badSignatureAlgorithm", "{}", a.text);
    assert_eq!(acme_issued(&serve), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_with_other_names_is_bad_csr_and_a_retried_finalize_issues_nothing_twice() {
    let (_dir, serve, http) = start().await;
    let mut c = Client::new(&serve);
    register(&mut c).await;
    let tokens = responder(http).await;
    let order = ready_order(&c, &tokens, "localhost").await;

    let finalize = order["finalize"].as_str().unwrap().to_string();
    for names in [&["localhost", "other.example"][..], &["other.example"][..]] {
        let a = c.post(&finalize, Some(&json!({"csr": csr(names)}))).await;
        assert_eq!(
            (a.status, a.problem()),
            (400, "badCSR"),
            "{names:?}: {}",
            a.text
        );
    }
    let a = c
        .post(&finalize, Some(&json!({"csr": "!!not base64!!"})))
        .await;
    assert_eq!(a.problem(), "badCSR", "{}", a.text);
    assert_eq!(acme_issued(&serve), 0, "nothing issued for a bad CSR");

    let a = c
        .post(&finalize, Some(&json!({"csr": csr(&["localhost"])})))
        .await;
    assert_eq!(a.body["status"], "valid", "{}", a.text);
    let cert_url = a.body["certificate"].as_str().unwrap().to_string();
    let first = c.post(&cert_url, None).await.text;
    // A retried finalize (say its answer was lost) gets the same certificate.
    let a = c
        .post(&finalize, Some(&json!({"csr": csr(&["localhost"])})))
        .await;
    assert_eq!(a.body["certificate"], cert_url.as_str(), "{}", a.text);
    assert_eq!(c.post(&cert_url, None).await.text, first);
    assert_eq!(acme_issued(&serve), 1);
}
