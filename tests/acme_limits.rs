//! The CA's own validations are bounded (`acme::slots`): one account has at most 8 running at
//! once; a ninth challenge is refused with `rateLimited` before anything changes, and succeeds
//! when asked again after the others have ended. Against the real `serve`, with http-01 targets
//! that accept the CA's connection and never answer (what a hostile client would point it at).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::acme_client::{Client, Tokens, http01_answer, register, start};

/// An http-01 target on `host:port` that holds every connection open without a word until
/// `answering` is set, then answers the tokens in `tokens`. Counts the connections it got.
struct Target {
    tokens: Tokens,
    answering: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

async fn target(host: &str, port: u16) -> Target {
    let listener = tokio::net::TcpListener::bind((host, port)).await.unwrap();
    let t = Target {
        tokens: Tokens::default(),
        answering: Arc::default(),
        connections: Arc::default(),
    };
    let (tokens, answering, connections) =
        (t.tokens.clone(), t.answering.clone(), t.connections.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let (tokens, answering) = (tokens.clone(), answering.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                if !answering.load(Ordering::SeqCst) {
                    // Hold the connection, as a tarpit would, until the CA gives up.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                let resp = http01_answer(&buf[..n], &tokens);
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    t
}

/// (authorization URL, challenge URL, token) of an order for the address `ip`.
async fn order_for(c: &Client, ip: &str) -> (String, String, String) {
    let o = c
        .post(
            &c.url("new-order"),
            Some(&json!({"identifiers": [{"type": "ip", "value": ip}]})),
        )
        .await;
    assert_eq!(o.status, 201, "{}", o.text);
    let authz_url = o.body["authorizations"][0].as_str().unwrap().to_string();
    let authz = c.post(&authz_url, None).await.body;
    let ch = &authz["challenges"][0];
    (
        authz_url,
        ch["url"].as_str().unwrap().to_string(),
        ch["token"].as_str().unwrap().to_string(),
    )
}

fn authz_status(a: &Value) -> &str {
    a["status"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_has_at_most_eight_validations_running_and_the_ninth_is_asked_again_later() {
    let (_dir, serve, http) = start().await;
    let mut c = Client::new(&serve);
    register(&mut c).await;
    let ips: Vec<String> = (2..=10).map(|i| format!("127.0.0.{i}")).collect();
    let mut targets = Vec::new();
    let mut orders = Vec::new();
    for ip in &ips {
        targets.push(target(ip, http).await);
        orders.push(order_for(&c, ip).await);
    }

    // All nine challenges asked at once.
    let respond = json!({});
    let answers = join_all(orders.iter().map(|(_, url, _)| c.post(url, Some(&respond)))).await;
    let refused: Vec<usize> = (0..answers.len())
        .filter(|i| answers[*i].status == 429)
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "{:?}",
        answers.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    let r = refused[0];
    assert_eq!(answers[r].problem(), "rateLimited", "{}", answers[r].text);
    for (i, a) in answers.iter().enumerate().filter(|(i, _)| *i != r) {
        assert_eq!(a.status, 200, "challenge {i}: {}", a.text);
        assert_eq!(a.body["status"], "processing", "challenge {i}: {}", a.text);
    }
    // Nothing changed for the refused one: its challenge is still pending, and the CA never
    // connected to its target.
    let z = c.post(&orders[r].0, None).await.body;
    assert_eq!(z["challenges"][0]["status"], "pending", "{z}");
    assert_eq!(targets[r].connections.load(Ordering::SeqCst), 0);
    let opened: usize = targets
        .iter()
        .map(|t| t.connections.load(Ordering::SeqCst))
        .sum();
    assert_eq!(opened, 8, "one connection per running validation");

    // The eight give up (10 s without an answer); then the ninth's turn.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for (i, (authz_url, _, _)) in orders.iter().enumerate().filter(|(i, _)| *i != r) {
        loop {
            let z = c.post(authz_url, None).await.body;
            if authz_status(&z) == "invalid" {
                assert_eq!(
                    z["challenges"][0]["error"]["type"], "urn:ietf:params:acme:error:connection",
                    "{z}"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "validation {i} never ended: {z}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let (authz_url, url, token) = &orders[r];
    targets[r]
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), format!("{token}.{}", c.thumbprint()));
    targets[r].answering.store(true, Ordering::SeqCst);
    let again = c.post(url, Some(&json!({}))).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["status"], "valid", "{}", again.text);
    let z = c.post(authz_url, None).await.body;
    assert_eq!(authz_status(&z), "valid", "{z}");
}
