//! An ACME client without pauses, for `scripts/bench_acme.sh`: the same client (instant-acme)
//! against certdock, Caddy's `acme_server` and pebble, so that the server's time per issuance
//! is not buried under lego's start-up and its 55.6 ms sleep before each authorization.
//!
//!   acme_client DIRECTORY_URL ROOTS_PEM SEQUENTIAL CONCURRENT SECONDS
//!
//! One account; SEQUENTIAL whole issuances for `localhost` (order, authorization, http-01,
//! finalize with a fresh P-256 key, download), each timed; then CONCURRENT tasks, one account
//! each, issue in a loop for SECONDS. http-01 is answered on port 80 (every address) by this
//! process. A server still validating is polled every 10 ms, the same for every server. Requests go over HTTP/1.1 with TCP_NODELAY (see [`Http`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use axum::body::Bytes;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Tokens = Arc<Mutex<HashMap<String, String>>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

const POLL: Duration = Duration::from_millis(10);

/// `GET /.well-known/acme-challenge/TOKEN` on [::]:80 (IPv4 too) → the key authorization.
async fn responder() -> Result<Tokens, Error> {
    let tokens: Tokens = Arc::default();
    let listener = tokio::net::TcpListener::bind("[::]:80").await?;
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
                let answer = t.lock().ok().and_then(|m| m.get(token).cloned());
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
    Ok(tokens)
}

/// HTTP/1.1 with TCP_NODELAY (reqwest's default) for every server. instant-acme's own client
/// speaks HTTP/2 where offered without TCP_NODELAY: against a server offering h2 (Caddy) each
/// request then waits out a 40 ms delayed ACK, which is the client's doing, not the server's.
#[derive(Clone)]
struct Http(reqwest::Client);

impl Http {
    fn new(roots: &str) -> Result<Self, Error> {
        let mut store = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(roots)? {
            store.add(cert?)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
        Ok(Self(
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(30))
                .build()?,
        ))
    }
}

impl HttpClient for Http {
    fn request(
        &self,
        req: axum::http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX)
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let resp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let mut out = axum::http::Response::builder().status(resp.status());
            if let Some(h) = out.headers_mut() {
                *h = resp.headers().clone();
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let out = out
                .body(BodyWrapper::from(bytes.to_vec()))
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            Ok(BytesResponse::from(out))
        })
    }
}

async fn account(directory: &str, roots: &str, email: &str) -> Result<Account, Error> {
    let contact = [format!("mailto:{email}")];
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, _) = Account::builder_with_http(Box::new(Http::new(roots)?))
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await?;
    Ok(account)
}

/// One whole issuance; the chain's length is checked so that a failure cannot pass as fast.
async fn issue(account: &Account, tokens: &Tokens) -> Result<(), Error> {
    // ACME_CLIENT_TRACE=1: when each step ended, to see where an issuance waits.
    let trace = std::env::var_os("ACME_CLIENT_TRACE").is_some();
    let t0 = Instant::now();
    let step = |what: &str| {
        if trace {
            eprintln!("{:8.1} ms  {what}", t0.elapsed().as_secs_f64() * 1e3);
        }
    };
    let ids = [Identifier::Dns("localhost".into())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    step("new order");
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        if authz.status == AuthorizationStatus::Valid {
            continue; // a server may reuse an authorization this account already holds
        }
        let mut ch = authz
            .challenge(ChallengeType::Http01)
            .ok_or("no http-01 challenge")?;
        let key_auth = ch.key_authorization().as_str().to_string();
        tokens
            .lock()
            .map_err(|_| "tokens lock")?
            .insert(ch.token.clone(), key_auth);
        step("authorization");
        ch.set_ready().await?;
        step("challenge ready");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match order.refresh().await?.status {
            OrderStatus::Ready => break,
            OrderStatus::Pending | OrderStatus::Processing if Instant::now() < deadline => {
                tokio::time::sleep(POLL).await
            }
            other => return Err(format!("order {other:?} before finalize").into()),
        }
        step("order polled");
    }
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    order
        .finalize_csr(params.serialize_request(&key)?.der())
        .await?;
    step("finalize");
    let chain = loop {
        if let Some(chain) = order.certificate().await? {
            break chain;
        }
        if Instant::now() > deadline {
            return Err("no certificate within 30 s".into());
        }
        tokio::time::sleep(POLL).await;
    };
    step("certificate");
    if !chain.contains("BEGIN CERTIFICATE") {
        return Err("the answer is not a certificate chain".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [directory, roots, sequential, concurrent, seconds] = args.as_slice() else {
        return Err(
            "usage: acme_client DIRECTORY_URL ROOTS_PEM SEQUENTIAL CONCURRENT SECONDS".into(),
        );
    };
    let (sequential, concurrent): (usize, usize) = (sequential.parse()?, concurrent.parse()?);
    let window = Duration::from_secs(seconds.parse()?);
    let tokens = responder().await?;

    let first = account(directory, roots, "seq@example.com").await?;
    issue(&first, &tokens).await?; // warm-up: connection, nonce
    let mut times = Vec::with_capacity(sequential);
    let start = Instant::now();
    for _ in 0..sequential {
        let t0 = Instant::now();
        issue(&first, &tokens).await?;
        times.push(t0.elapsed());
    }
    let total = start.elapsed();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "sequential: {} issuances, {:.1} ms median ({:.1}-{:.1}), {:.0}/min",
        times.len(),
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len() as f64 * 60.0 / total.as_secs_f64()
    );

    let mut accounts = Vec::with_capacity(concurrent);
    for i in 0..concurrent {
        accounts.push(account(directory, roots, &format!("c{i}@example.com")).await?);
    }
    let start = Instant::now();
    let end = start + window;
    let mut tasks = Vec::new();
    for acct in accounts {
        let tokens = tokens.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < end {
                issue(&acct, &tokens).await?;
                n += 1;
            }
            Ok::<usize, Error>(n)
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    let elapsed = start.elapsed();
    println!(
        "concurrent ({concurrent} tasks): {done} issuances in {:.1} s = {:.0}/min",
        elapsed.as_secs_f64(),
        done as f64 * 60.0 / elapsed.as_secs_f64()
    );
    Ok(())
}
