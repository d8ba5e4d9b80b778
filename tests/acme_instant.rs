//! The ACME server against a Rust client (instant-acme, ring only): an order with http-01, the
//! chain, renewalInfo, keyChange, revocation and account deactivation.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy, RevocationRequest,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Serve, free_port};

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// A minimal http-01 responder: `GET /.well-known/acme-challenge/TOKEN` → the key authorization.
async fn responder(port: u16) -> Tokens {
    let tokens: Tokens = Arc::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the http-01 port");
    let t = tokens.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let t = t.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or_default();
                let token = path.rsplit('/').next().unwrap_or_default();
                let answer = t.lock().unwrap().get(token).cloned();
                let resp = match answer {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .into()
                    }
                };
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    tokens
}

fn csr_for(name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    // rcgen's default CN ("rcgen self signed cert") is not a name: certdock refuses it.
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serialize_request(&key).unwrap().der().to_vec()
}

async fn obtain(account: &Account, tokens: &Tokens, name: &str) -> String {
    let ids = [Identifier::Dns(name.into())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.unwrap();
        assert_eq!(authz.status, AuthorizationStatus::Pending);
        let mut ch = authz
            .challenge(ChallengeType::Http01)
            .expect("http-01 offered");
        tokens.lock().unwrap().insert(
            ch.token.clone(),
            ch.key_authorization().as_str().to_string(),
        );
        ch.set_ready().await.unwrap();
    }
    let status = order.poll_ready(&RetryPolicy::default()).await.unwrap();
    assert_eq!(status, OrderStatus::Ready);
    order.finalize_csr(&csr_for(name)).await.unwrap();
    order
        .poll_certificate(&RetryPolicy::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_acme_orders_renews_info_rolls_its_key_revokes_and_deactivates() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let http_arg = http.to_string();
    let serve = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || {
            Serve::start_at(
                &d,
                &d.join("state"),
                free_port(),
                &["--acme-http-port", &http_arg],
            )
        }
    })
    .await
    .unwrap();
    let tokens = responder(http).await;
    let directory = format!("{}/acme/directory", serve.url_ip());
    let (mut account, _) = Account::builder_with_root(&serve.roots)
        .unwrap()
        .create(
            &NewAccount {
                contact: &["mailto:ops@example.com"],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.clone(),
            None,
        )
        .await
        .unwrap();

    let chain = obtain(&account, &tokens, "localhost").await;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs.len(), 2, "leaf and intermediate: {chain}");

    // ARI: the window sits in the last third of the lifetime, and is ahead of us.
    let id = CertificateIdentifier::try_from(&certs[0]).unwrap();
    let (info, _) = account.renewal_info(&id).await.unwrap();
    let w = info.suggested_window;
    assert!(w.start < w.end);
    assert!(w.start > time::OffsetDateTime::now_utc());

    // keyChange: the same account carries on with a new key.
    let old_id = account.id().to_string();
    let creds = account.update_key().await.unwrap();
    assert_eq!(account.id(), old_id);
    obtain(&account, &tokens, "localhost").await;

    // Revocation by the ordering account; then ARI says renew now.
    account
        .revoke(&RevocationRequest {
            certificate: &certs[0],
            reason: None,
        })
        .await
        .unwrap();
    let again = account
        .revoke(&RevocationRequest {
            certificate: &certs[0],
            reason: None,
        })
        .await
        .unwrap_err();
    assert!(again.to_string().contains("alreadyRevoked"), "{again}");
    let (info, _) = account.renewal_info(&id).await.unwrap();
    assert!(info.suggested_window.start <= time::OffsetDateTime::now_utc());

    // Deactivation: the account's later requests are refused.
    let twin = Account::builder_with_root(&serve.roots)
        .unwrap()
        .from_credentials(creds)
        .await
        .unwrap();
    account.deactivate().await.unwrap();
    let ids = [Identifier::Dns("localhost".into())];
    let Err(refused) = twin.new_order(&NewOrder::new(&ids)).await else {
        panic!("a deactivated account placed an order");
    };
    assert!(refused.to_string().contains("unauthorized"), "{refused}");
    drop(serve);
}
