//! Who may call whom, end to end: labelled containers get client certificates (with groups),
//! a server's `certdock.allow` is enforced by a real Caddy 2.6 through `forward_auth` to
//! certdock's decider, with the proxy's own client certificate from `OUT/traefik-client/`.
//! A revocation bites on the next request; forged headers get nothing without the proxy's
//! certificate; Traefik's header format is read as Traefik writes it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::mtls_client::{Identity, Target, get, init_crypto};
use common::peers::{Peer, free_port, issue_server_cert};
use common::process::{Certdock, eventually};
use common::{ContainerSpec, TestContainer, curl_at, docker, label_prefix, ok, s};

/// The API's name: forward-auth reaches certdock under it (Caddy connects to 127.0.0.1 and
/// checks this name; Traefik would resolve it on the proxy network).
const API_NAME: &str = "decider.test";

struct Setup {
    cd: Certdock,
    api_port: u16,
    _containers: Vec<TestContainer>,
}

impl Setup {
    async fn start() -> Setup {
        init_crypto();
        let d = docker().await;
        let api_port = free_port();
        let listen = format!("127.0.0.1:{api_port}");
        let cd = Certdock::start(
            "run",
            &[
                "--listen",
                &listen,
                "--api-name",
                API_NAME,
                "--label-prefix",
                label_prefix(),
            ],
            &[],
        );
        let client = |name: &str| {
            ContainerSpec::default()
                .label("certdock.enable", "true")
                .label("certdock.name", name)
                .label("certdock.usage", "client")
                .label("certdock.delivery", "volume")
        };
        let containers = vec![
            ContainerSpec::default()
                .label("certdock.enable", "true")
                .label("certdock.name", "api")
                .label("certdock.usage", "server")
                .label("certdock.allow", "frontend,group:ops")
                .run(&d)
                .await,
            client("frontend").run(&d).await,
            client("cron")
                .label("certdock.groups", "ops,nightly")
                .run(&d)
                .await,
            client("batch")
                .label("certdock.groups", "web")
                .run(&d)
                .await,
        ];
        let setup = Setup {
            cd,
            api_port,
            _containers: containers,
        };
        for f in [
            "certs/frontend/key.pem",
            "certs/cron/key.pem",
            "certs/batch/key.pem",
            "traefik-client/key.pem",
        ] {
            let path = setup.cd.out.join(f);
            eventually(f, Duration::from_secs(30), || async {
                path.is_file().then_some(())
            })
            .await;
        }
        let yml = setup.cd.out.join("traefik/certdock.yml");
        eventually("the allow middleware", Duration::from_secs(30), || async {
            std::fs::read_to_string(&yml)
                .ok()?
                .contains("certdock-allow-api")
                .then_some(())
        })
        .await;
        setup
    }

    fn identity(&self, name: &str) -> Identity {
        let dir = self.cd.out.join("certs").join(name);
        Identity::from_files(&dir.join("fullchain.pem"), &dir.join("key.pem"))
    }

    fn proxy_dir(&self) -> PathBuf {
        self.cd.out.join("traefik-client")
    }

    /// `GET /v1/forward-auth/api` straight at certdock with curl: (status, headers + body).
    fn ask(&self, client_cert: Option<&Path>, headers: &[String]) -> (u16, String) {
        let mut extra: Vec<String> = vec!["-i".into()];
        if let Some(dir) = client_cert {
            extra.extend([
                "--cert".into(),
                s(&dir.join("fullchain.pem")).into(),
                "--key".into(),
                s(&dir.join("key.pem")).into(),
            ]);
        }
        for h in headers {
            extra.extend(["-H".into(), h.clone()]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        curl_at(
            &format!("https://{API_NAME}:{}", self.api_port),
            &self.cd.out.join("ca.pem"),
            &[&format!("{API_NAME}:{}:127.0.0.1", self.api_port)],
            &["/v1/forward-auth/api"],
            &extra,
        )
    }

    fn serial(&self, name: &str) -> String {
        self.identity(name).serial()
    }
}

/// The leaf of `OUT/certs/NAME/cert.pem` as Traefik's passTLSClientCert writes it: the PEM body
/// without its BEGIN/END lines and newlines.
fn traefik_header(out: &Path, name: &str) -> String {
    let pem = std::fs::read_to_string(out.join("certs").join(name).join("cert.pem")).unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn rfc9440_header(out: &Path, name: &str) -> String {
    let b64: String = traefik_header(out, name);
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// Caddy requiring client certificates (certdock's snippet), asking certdock's decider with
/// `forward_auth` over mTLS with the proxy's certificate, then answering who called.
fn caddy_with_forward_auth(work: &Path, out: &Path, api_port: u16, state: &Path) -> Peer {
    let server = issue_server_cert(state, "caddy-fa", &work.join("server"));
    let port = free_port();
    let proxy = out.join("traefik-client");
    let caddyfile = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n\n\
         import {snippet}\n\n\
         https://localhost:{port} {{\n\
         \tbind 127.0.0.1\n\
         \timport mtls\n\
         \ttls {cert} {key}\n\
         \tforward_auth 127.0.0.1:{api_port} {{\n\
         \t\turi /v1/forward-auth/api\n\
         \t\theader_up Client-Cert \":{{http.request.tls.client.certificate_der_base64}}:\"\n\
         \t\tcopy_headers X-Certdock-Client X-Certdock-Groups\n\
         \t\ttransport http {{\n\
         \t\t\ttls\n\
         \t\t\ttls_client_auth {pcert} {pkey}\n\
         \t\t\ttls_trusted_ca_certs {root}\n\
         \t\t\ttls_server_name {API_NAME}\n\
         \t\t}}\n\
         \t}}\n\
         \trespond \"ok {{http.request.header.X-Certdock-Client}} [{{http.request.header.X-Certdock-Groups}}]\"\n\
         }}\n",
        snippet = out.join("caddy/mtls.caddy").display(),
        cert = server.join("fullchain.pem").display(),
        key = server.join("key.pem").display(),
        pcert = proxy.join("fullchain.pem").display(),
        pkey = proxy.join("key.pem").display(),
        root = out.join("caddy/ca-root.pem").display(),
    );
    let file = work.join("Caddyfile");
    std::fs::write(&file, caddyfile).unwrap();
    let mut cmd = Command::new("caddy");
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", work)
        .env("XDG_CONFIG_HOME", work.join("config"))
        .env("XDG_DATA_HOME", work.join("data"));
    Peer::spawn("caddy", cmd, work.join("caddy.log"), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_admits_only_the_allowed_and_revocation_bites_at_once() {
    let setup = Setup::start().await;
    let work = tempfile::tempdir().unwrap();
    let mut caddy =
        caddy_with_forward_auth(work.path(), &setup.cd.out, setup.api_port, &setup.cd.state);
    let target = Target::new(caddy.port, "localhost", &setup.cd.out.join("ca.pem"));

    let frontend = get(&target, Some(&setup.identity("frontend"))).await;
    assert_eq!(
        frontend,
        Ok((200, "ok frontend []".into())),
        "an allowed identity passes, and the backend learns who it is"
    );
    let cron = get(&target, Some(&setup.identity("cron"))).await;
    assert_eq!(
        cron,
        Ok((200, "ok cron [nightly,ops]".into())),
        "a member of an allowed group passes"
    );
    let batch = get(&target, Some(&setup.identity("batch"))).await;
    assert!(
        matches!(&batch, Ok((403, body)) if body.contains("not_allowed")),
        "anyone else is refused: {batch:?}"
    );

    // Revoked by the admin API: refused on the very next request.
    let admin = ok(&common::certdock(&[
        "token",
        "create",
        "--state-dir",
        s(&setup.cd.state),
        "--kind",
        "admin",
        "--name",
        "ops",
    ]));
    let revoked_frontend = setup.identity("frontend");
    let body = work.path().join("revoke.json");
    std::fs::write(
        &body,
        format!("{{\"serial\":\"{}\"}}", setup.serial("frontend")),
    )
    .unwrap();
    let (code, text) = curl_at(
        &format!("https://{API_NAME}:{}", setup.api_port),
        &setup.cd.out.join("ca.pem"),
        &[&format!("{API_NAME}:{}:127.0.0.1", setup.api_port)],
        &["/v1/revoke"],
        &[
            "-H",
            &format!("Authorization: Bearer {}", admin.trim()),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", s(&body)),
        ],
    );
    assert_eq!(code, 200, "{text}");
    // The revoked certificate itself (the controller soon replaces the one in the container).
    let frontend = get(&target, Some(&revoked_frontend)).await;
    assert!(
        matches!(&frontend, Ok((403, body)) if body.contains("revoked")),
        "a revoked certificate is refused at once, though the TLS layer still accepts it: {frontend:?}"
    );

    // Revoked by the CLI (another process): within the decider's refresh interval.
    let revoked_cron = setup.identity("cron");
    ok(&common::certdock(&[
        "revoke",
        "--state-dir",
        s(&setup.cd.state),
        &setup.serial("cron"),
    ]));
    let started = std::time::Instant::now();
    eventually(
        "cron refused after revoke",
        Duration::from_secs(5),
        || async {
            let answer = get(&target, Some(&revoked_cron)).await;
            matches!(&answer, Ok((403, body)) if body.contains("revoked")).then_some(())
        },
    )
    .await;
    eprintln!(
        "a CLI revocation reached the decider in {:?}",
        started.elapsed()
    );
    assert!(caddy.is_running(), "caddy died:\n{}", caddy.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_proxy_certificate_gets_an_answer_and_traefiks_format_is_read() {
    let setup = Setup::start().await;
    let out = setup.cd.out.clone();
    let forged = format!(
        "X-Forwarded-Tls-Client-Cert: {}",
        traefik_header(&out, "frontend")
    );
    // No certificate on the connection: a forged header gets nothing.
    let (code, text) = setup.ask(None, std::slice::from_ref(&forged));
    assert_eq!(code, 401, "{text}");
    // A client's own certificate is not the proxy's.
    let (code, text) = setup.ask(
        Some(&out.join("certs/frontend")),
        std::slice::from_ref(&forged),
    );
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("not_the_proxy"), "{text}");

    // The proxy, with Traefik's format: plain, URL-escaped (Traefik v2), with the chain appended.
    let proxy = setup.proxy_dir();
    let leaf = traefik_header(&out, "frontend");
    let escaped = leaf
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let chain = format!("{leaf},{}", traefik_header(&out, "cron"));
    for value in [leaf.clone(), escaped, chain] {
        let (code, text) = setup.ask(
            Some(&proxy),
            &[format!("X-Forwarded-Tls-Client-Cert: {value}")],
        );
        assert_eq!(code, 200, "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("x-certdock-client: frontend"),
            "{text}"
        );
    }
    // RFC 9440, and a group member.
    let (code, text) = setup.ask(
        Some(&proxy),
        &[format!("Client-Cert: {}", rfc9440_header(&out, "cron"))],
    );
    assert_eq!(code, 200, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-certdock-groups: nightly,ops"),
        "{text}"
    );
    // Not allowed, no header, garbage, an unknown server.
    let (code, text) = setup.ask(
        Some(&proxy),
        &[format!(
            "X-Forwarded-Tls-Client-Cert: {}",
            traefik_header(&out, "batch")
        )],
    );
    assert_eq!(code, 403, "{text}");
    let (code, text) = setup.ask(Some(&proxy), &[]);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("no_client_certificate"), "{text}");
    let (code, _) = setup.ask(
        Some(&proxy),
        &["X-Forwarded-Tls-Client-Cert: not%zzbase64".into()],
    );
    assert_eq!(code, 403);
    let (code, text) = curl_at(
        &format!("https://{API_NAME}:{}", setup.api_port),
        &out.join("ca.pem"),
        &[&format!("{API_NAME}:{}:127.0.0.1", setup.api_port)],
        &["/v1/forward-auth/nobody"],
        &[
            "--cert",
            s(&proxy.join("fullchain.pem")),
            "--key",
            s(&proxy.join("key.pem")),
            "-H",
            &forged,
        ],
    );
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("unknown_server"), "{text}");

    // `certdock status` names the middleware routers use.
    let status = setup.cd.status();
    let api = status
        .iter()
        .find(|e| e["name"] == "api")
        .expect("api in status");
    assert_eq!(api["middleware"], "certdock-allow-api@file");
    assert_eq!(api["allow"], "frontend,group:ops");
    let cron = status.iter().find(|e| e["name"] == "cron").unwrap();
    assert_eq!(cron["groups"], serde_json::json!(["nightly", "ops"]));
}
