//! Forward-auth on an agent host (issue 13, scale past one machine): a central `certdock serve`,
//! a `certdock agent` answering `GET /v1/forward-auth/NAME` on its own --listen for the proxy
//! beside it. A revocation on the CA reaches the agent within 5 s (measured, printed); with the
//! CA gone the agent keeps deciding from its last CRL and its metrics say the CA is unreachable.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::{Certdock, eventually, path_str};
use common::{ContainerSpec, Serve, curl_at, docker, free_port, ok, s};

/// The agent's --api-name: the middleware certdock writes points here.
const AGENT_NAME: &str = "fa-agent.test";

struct Agent {
    cd: Certdock,
    port: u16,
}

impl Agent {
    fn curl(&self, path: &str, extra: &[&str]) -> (u16, String) {
        curl_at(
            &format!("https://{AGENT_NAME}:{}", self.port),
            &self.cd.out.join("ca.pem"),
            &[&format!("{AGENT_NAME}:{}:127.0.0.1", self.port)],
            &[path],
            extra,
        )
    }

    /// Asks as the proxy (certdock's Traefik client certificate) whether `client` may call
    /// `api`, with the client's leaf in Traefik's header.
    fn ask(&self, client: &str) -> (u16, String) {
        self.ask_with(&traefik_header(&self.cd.out, client))
    }

    /// [`Agent::ask`] with a given leaf (Traefik's header value), e.g. one since replaced.
    fn ask_with(&self, leaf: &str) -> (u16, String) {
        let proxy = self.cd.out.join("traefik-client");
        let header = format!("X-Forwarded-Tls-Client-Cert: {leaf}");
        self.curl(
            "/v1/forward-auth/api",
            &[
                "--cert",
                path_str(&proxy.join("fullchain.pem")),
                "--key",
                path_str(&proxy.join("key.pem")),
                "-H",
                &header,
            ],
        )
    }

    /// [`Agent::ask`] while the listener may still be starting: `None` when curl gets no answer.
    fn ask_quietly(&self, client: &str) -> Option<u16> {
        let proxy = self.cd.out.join("traefik-client");
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(self.cd.out.join("ca.pem"))
            .arg("--resolve")
            .arg(format!("{AGENT_NAME}:{}:127.0.0.1", self.port))
            .arg("--cert")
            .arg(proxy.join("fullchain.pem"))
            .arg("--key")
            .arg(proxy.join("key.pem"))
            .arg("-H")
            .arg(format!(
                "X-Forwarded-Tls-Client-Cert: {}",
                traefik_header(&self.cd.out, client)
            ))
            .arg(format!(
                "https://{AGENT_NAME}:{}/v1/forward-auth/api",
                self.port
            ))
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|c| *c != 0)
    }

    fn serial(&self, name: &str) -> String {
        let cert = self.cd.out.join("certs").join(name).join("cert.pem");
        let out = common::process::openssl(&["x509", "-in", path_str(&cert), "-noout", "-serial"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().trim_start_matches("serial=").to_string()
    }
}

/// The leaf as Traefik's passTLSClientCert writes it: the PEM body without its armour.
fn traefik_header(out: &Path, name: &str) -> String {
    let pem = std::fs::read_to_string(out.join("certs").join(name).join("cert.pem"))
        .expect("the client's certificate is delivered");
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_decides_forward_auth_on_its_host_learns_revocations_within_five_seconds_and_rides_out_a_ca_outage()
 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = docker().await;
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start_at(dir.path(), &dir.path().join("state"), free_port(), &[]);
    let token = dir.path().join("agent.token");
    std::fs::write(&token, serve.token("agent", "host1.agents.test", &[])).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let agent = Agent {
        cd: Certdock::start(
            "agent",
            &[
                "--ca-url",
                &serve.url_ip(),
                "--token-file",
                path_str(&token),
                "--ca-fingerprint",
                &serve.fingerprint(),
                "--listen",
                &listen,
                "--api-name",
                AGENT_NAME,
            ],
            &[],
        ),
        port,
    };
    let client = |name: &str| {
        ContainerSpec::default()
            .label("certdock.enable", "true")
            .label("certdock.name", name)
            .label("certdock.usage", "client")
            .label("certdock.delivery", "volume")
    };
    let _containers = [
        ContainerSpec::default()
            .label("certdock.enable", "true")
            .label("certdock.name", "api")
            .label("certdock.usage", "server")
            .label("certdock.allow", "frontend,reporter")
            .run(&d)
            .await,
        client("frontend").run(&d).await,
        client("reporter").run(&d).await,
        client("batch").run(&d).await,
    ];
    for f in [
        "certs/frontend/key.pem",
        "certs/batch/key.pem",
        "certs/reporter/key.pem",
        "traefik-client/key.pem",
    ] {
        let path = agent.cd.out.join(f);
        eventually(f, Duration::from_secs(40), || async {
            path.is_file().then_some(())
        })
        .await;
    }
    // The middleware points at this agent, never at the central CA.
    let yml = agent.cd.out.join("traefik/certdock.yml");
    let local = format!("https://{AGENT_NAME}:{port}/v1/forward-auth/api");
    let text = eventually(
        "the agent's allow middleware",
        Duration::from_secs(30),
        || {
            let (yml, local) = (yml.clone(), local.clone());
            async move {
                let text = std::fs::read_to_string(&yml).ok()?;
                text.contains(&local).then_some(text)
            }
        },
    )
    .await;
    assert!(!text.contains(&serve.url_ip()), "{text}");

    eventually(
        "the agent admits frontend",
        Duration::from_secs(30),
        || async { (agent.ask("frontend").0 == 200).then_some(()) },
    )
    .await;
    assert_eq!(agent.ask("reporter").0, 200);
    let (code, body) = agent.ask("batch");
    assert_eq!(code, 403, "batch is not in api's allow list: {body}");
    assert!(body.contains("not_allowed"), "{body}");
    // Without the proxy's certificate there is no answer worth having.
    let (code, _) = agent.curl(
        "/v1/forward-auth/api",
        &[
            "-H",
            &format!(
                "X-Forwarded-Tls-Client-Cert: {}",
                traefik_header(&agent.cd.out, "frontend")
            ),
        ],
    );
    assert_eq!(code, 401);
    // The agent signs nothing.
    let (code, _) = agent.curl("/v1/sign", &["--data", "{}"]);
    assert_eq!(code, 404);

    // Revoked on the CA by the CLI: measured until the agent refuses it. The revoked
    // certificate itself is asked about: the agent's controller replaces the one delivered.
    let revoked = traefik_header(&agent.cd.out, "frontend");
    ok(&common::certdock(&[
        "revoke",
        "--state-dir",
        s(&serve.state),
        &agent.serial("frontend"),
    ]));
    let started = Instant::now();
    eventually(
        "the agent refuses the revoked client",
        Duration::from_secs(10),
        || async {
            let (code, body) = agent.ask_with(&revoked);
            (code == 403 && body.contains("revoked")).then_some(())
        },
    )
    .await;
    let delay = started.elapsed();
    eprintln!("a revocation on the CA reached the agent's decider in {delay:?}");
    assert!(delay < Duration::from_secs(5), "took {delay:?}");

    // The CA goes away: the agent decides from its last CRL, and says so after 30 s.
    serve.stop();
    let (code, body) = agent.ask("reporter");
    assert_eq!(code, 200, "still allowed without the CA: {body}");
    let (code, body) = agent.ask_with(&revoked);
    assert_eq!(code, 403, "still revoked without the CA: {body}");
    let (code, body) = agent.ask("batch");
    assert_eq!(code, 403, "{body}");
    let (_, fresh) = agent.curl("/metrics", &[]);
    assert!(
        fresh.lines().any(|l| l == "certdock_forward_auth_stale 0"),
        "{fresh}"
    );
    eventually(
        "the agent's metrics say its revocations are stale",
        Duration::from_secs(60),
        || async {
            let (code, text) = agent.curl("/metrics", &[]);
            (code == 200 && text.lines().any(|l| l == "certdock_forward_auth_stale 1"))
                .then_some(())
        },
    )
    .await;
    let (_, metrics) = agent.curl("/metrics", &[]);
    let age = metrics
        .lines()
        .find_map(|l| l.strip_prefix("certdock_forward_auth_revocations_age_seconds "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .expect("the age gauge");
    assert!(age > 30, "{metrics}");
    assert_eq!(agent.ask("reporter").0, 200);
    assert_eq!(agent.ask_with(&revoked).0, 403);
    assert_eq!(agent.ask("batch").0, 403);

    // Restarted while the CA is still away: the kept CRL and listener certificate stand.
    let mut agent = agent;
    agent.cd.restart();
    eventually(
        "the restarted agent admits reporter",
        Duration::from_secs(30),
        || async { (agent.ask_quietly("reporter") == Some(200)).then_some(()) },
    )
    .await;
    assert_eq!(
        agent.ask_with(&revoked).0,
        403,
        "the kept CRL still revokes"
    );
    let (_, metrics) = agent.curl("/metrics", &[]);
    assert!(
        metrics
            .lines()
            .any(|l| l == "certdock_forward_auth_stale 1"),
        "{metrics}"
    );
}
