//! Hostile and broken ACME requests against the real server, signed by hand: each gets its RFC
//! 8555 problem type and a fresh nonce, nothing is issued, and a retried finalize issues nothing
//! twice.

mod common;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Serve, free_port};

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: EcdsaKeyPair,
    kid: Option<String>,
}

struct Answer {
    status: u16,
    nonce: Option<String>,
    location: Option<String>,
    content_type: String,
    body: Value,
    text: String,
}

impl Answer {
    fn problem(&self) -> &str {
        self.body["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:"))
            .unwrap_or("")
    }
}

impl Client {
    fn new(serve: &Serve) -> Self {
        let pem = std::fs::read(&serve.roots).unwrap();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        let roots = certdock::tls::root_store(&certs).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(certdock::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        let rng = SystemRandom::new();
        let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8.as_ref(), &rng).unwrap();
        Self {
            http,
            base: serve.url_ip(),
            key,
            kid: None,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/acme/{path}", self.base)
    }

    fn jwk(&self) -> Value {
        let p = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])})
    }

    fn thumbprint(&self) -> String {
        let j = self.jwk();
        let canon = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        b64(ring::digest::digest(&ring::digest::SHA256, canon.as_bytes()).as_ref())
    }

    /// A flattened JWS; `payload` None means POST-as-GET.
    fn jws(&self, url: &str, nonce: &str, payload: Option<&Value>) -> Vec<u8> {
        let mut header = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match &self.kid {
            Some(kid) => header["kid"] = json!(kid),
            None => header["jwk"] = self.jwk(),
        }
        let protected = b64(header.to_string().as_bytes());
        let payload = payload.map_or(String::new(), |p| b64(p.to_string().as_bytes()));
        let sig = self
            .key
            .sign(
                &SystemRandom::new(),
                format!("{protected}.{payload}").as_bytes(),
            )
            .unwrap();
        json!({"protected": protected, "payload": payload, "signature": b64(sig.as_ref())})
            .to_string()
            .into_bytes()
    }

    async fn nonce(&self) -> String {
        let r = self.http.head(self.url("new-nonce")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["replay-nonce"].to_str().unwrap().to_string()
    }

    async fn raw(&self, url: &str, body: Vec<u8>, media: &str) -> Answer {
        let r = self
            .http
            .post(url)
            .header("content-type", media)
            .body(body)
            .send()
            .await
            .unwrap();
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (status, nonce, location) = (r.status().as_u16(), h("replay-nonce"), h("location"));
        let content_type = h("content-type").unwrap_or_default();
        let text = r.text().await.unwrap();
        Answer {
            status,
            nonce,
            location,
            content_type,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    async fn post(&self, url: &str, payload: Option<&Value>) -> Answer {
        let nonce = self.nonce().await;
        let body = self.jws(url, &nonce, payload);
        self.raw(url, body, "application/jose+json").await
    }
}

/// Answers every http-01 request for `token` with `key_auth`.
async fn responder(port: u16, token: String, key_auth: String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let answer = Arc::new(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{key_auth}",
        key_auth.len()
    ));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            assert!(String::from_utf8_lossy(&buf[..n]).contains(&token));
            let _ = sock.write_all(answer.as_bytes()).await;
        }
    });
}

fn acme_issued(serve: &Serve) -> usize {
    std::fs::read_to_string(serve.state.join("inventory.log"))
        .unwrap_or_default()
        .matches("\"acme:")
        .count()
}

fn csr(names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    b64(params.serialize_request(&key).unwrap().der())
}

async fn start() -> (tempfile::TempDir, Serve, u16) {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let d = dir.path().to_path_buf();
    let serve = tokio::task::spawn_blocking(move || {
        let port = http.to_string();
        Serve::start_at(
            &d,
            &d.join("state"),
            free_port(),
            &["--acme-http-port", &port],
        )
    })
    .await
    .unwrap();
    (dir, serve, http)
}

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
    let a = c.post(&c.url("new-account"), Some(&json!({}))).await;
    assert_eq!(a.status, 201, "{}", a.text);
    c.kid = a.location;
    let a = c
        .post(
            &c.url("new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "localhost"}]})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let order = a.body;
    let authz_url = order["authorizations"][0].as_str().unwrap().to_string();
    let authz = c.post(&authz_url, None).await.body;
    let ch = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ch| ch["type"] == "http-01")
        .unwrap()
        .clone();
    let token = ch["token"].as_str().unwrap().to_string();
    responder(http, token.clone(), format!("{token}.{}", c.thumbprint())).await;
    let a = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(a.body["status"], "valid", "{}", a.text);

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
