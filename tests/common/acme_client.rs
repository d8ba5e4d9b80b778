//! A hand-signing ACME client for tests that need requests no real client sends (bad nonces,
//! wrong URLs, foreign keys), an http-01 responder, and the server to run them against.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::serve::{Serve, free_port};

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    pub key: EcdsaKeyPair,
    pub kid: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub nonce: Option<String>,
    pub location: Option<String>,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn problem(&self) -> &str {
        self.body["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:"))
            .unwrap_or("")
    }
}

impl Client {
    pub fn new(serve: &Serve) -> Self {
        let rng = SystemRandom::new();
        let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self::with_key(serve, pk8.as_ref())
    }

    /// A client signing with a given P-256 key (PKCS#8), e.g. a certificate's own.
    pub fn with_key(serve: &Serve, pk8: &[u8]) -> Self {
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
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8, &SystemRandom::new())
                .unwrap();
        Self {
            http,
            base: serve.url_ip(),
            key,
            kid: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/acme/{path}", self.base)
    }

    pub fn jwk(&self) -> Value {
        let p = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])})
    }

    pub fn thumbprint(&self) -> String {
        let j = self.jwk();
        let canon = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        b64(ring::digest::digest(&ring::digest::SHA256, canon.as_bytes()).as_ref())
    }

    /// A flattened JWS; `payload` None means POST-as-GET.
    pub fn jws(&self, url: &str, nonce: &str, payload: Option<&Value>) -> Vec<u8> {
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

    pub async fn nonce(&self) -> String {
        let r = self.http.head(self.url("new-nonce")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["replay-nonce"].to_str().unwrap().to_string()
    }

    pub async fn raw(&self, url: &str, body: Vec<u8>, media: &str) -> Answer {
        let req = self.http.post(url).header("content-type", media).body(body);
        Self::answer(req).await
    }

    /// A plain GET (which signed resources refuse).
    pub async fn http_get(&self, url: &str) -> Answer {
        Self::answer(self.http.get(url)).await
    }

    async fn answer(req: reqwest::RequestBuilder) -> Answer {
        let r = req.send().await.unwrap();
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

    pub async fn post(&self, url: &str, payload: Option<&Value>) -> Answer {
        let nonce = self.nonce().await;
        let body = self.jws(url, &nonce, payload);
        self.raw(url, body, "application/jose+json").await
    }
}

/// Tokens the http-01 responder answers: token → key authorization.
pub type Tokens = Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

/// An http-01 responder on 127.0.0.1:`port`, answering the tokens put into the returned map.
pub async fn responder(port: u16) -> Tokens {
    responder_on("127.0.0.1", port).await
}

/// [`responder`] on another local address (an `ip` identifier's).
pub async fn responder_on(host: &str, port: u16) -> Tokens {
    let listener = tokio::net::TcpListener::bind((host, port)).await.unwrap();
    let tokens: Tokens = Arc::default();
    let t = tokens.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let resp = http01_answer(&buf[..n], &t);
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    tokens
}

/// The answer to an http-01 request (`GET /.well-known/acme-challenge/TOKEN`): the token's key
/// authorization from `tokens`, or 404.
pub fn http01_answer(request: &[u8], tokens: &Tokens) -> String {
    let req = String::from_utf8_lossy(request);
    let token = req
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    match tokens.lock().unwrap().get(&token) {
        Some(ka) => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ka}",
            ka.len()
        ),
        None => {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
    }
}

/// A new account for `c` (sets its `kid`).
pub async fn register(c: &mut Client) {
    let a = c.post(&c.url("new-account"), Some(&json!({}))).await;
    assert_eq!(a.status, 201, "{}", a.text);
    c.kid = a.location;
}

/// An order for `name` whose http-01 challenge `c` has answered: returns the order object.
pub async fn ready_order(c: &Client, tokens: &Tokens, name: &str) -> Value {
    let a = c
        .post(
            &c.url("new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": name}]})),
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
    tokens
        .lock()
        .unwrap()
        .insert(token.clone(), format!("{token}.{}", c.thumbprint()));
    let a = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(a.body["status"], "valid", "{}", a.text);
    order
}

/// A CSR for `names` (no CN) and its key as PKCS#8 DER.
pub fn csr_and_key(names: &[&str]) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = b64(params.serialize_request(&key).unwrap().der());
    (csr, key.serialize_der())
}

/// Finalizes a ready order for `name`: returns the leaf's DER and its key (PKCS#8).
pub async fn finalize(c: &Client, order: &Value, name: &str) -> (Vec<u8>, Vec<u8>) {
    let (csr, key) = csr_and_key(&[name]);
    let a = c
        .post(
            order["finalize"].as_str().unwrap(),
            Some(&json!({"csr": csr})),
        )
        .await;
    assert_eq!(a.body["status"], "valid", "{}", a.text);
    let pem = c
        .post(a.body["certificate"].as_str().unwrap(), None)
        .await
        .text;
    let leaf = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    (leaf.to_vec(), key)
}

pub fn acme_issued(serve: &Serve) -> usize {
    std::fs::read_to_string(serve.state.join("inventory.log"))
        .unwrap_or_default()
        .matches("\"acme:")
        .count()
}

pub fn csr(names: &[&str]) -> String {
    csr_and_key(names).0
}

pub async fn start() -> (tempfile::TempDir, Serve, u16) {
    start_with(&[]).await
}

/// A fresh `serve` with `--acme-http-port` on a free port and `extra` flags.
pub async fn start_with(extra: &[&str]) -> (tempfile::TempDir, Serve, u16) {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let d = dir.path().to_path_buf();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let serve = tokio::task::spawn_blocking(move || {
        let port = http.to_string();
        let mut args = vec!["--acme-http-port", port.as_str()];
        args.extend(extra.iter().map(String::as_str));
        Serve::start_at(&d, &d.join("state"), free_port(), &args)
    })
    .await
    .unwrap();
    (dir, serve, http)
}
