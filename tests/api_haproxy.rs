//! The reverse-proxy guide's deployment, proven: HAProxy in TCP passthrough mode, routing by
//! SNI with a default backend, in front of `certdock serve`; renewal by mTLS through it.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Serve, body_file, curl_at, free_port, openssl_csr, s, save_cert, x509};
use serde_json::json;

const HAPROXY: &str = "/usr/sbin/haproxy";

/// A foreground HAProxy, killed on drop.
struct Haproxy {
    child: Child,
    log: std::path::PathBuf,
}

impl Haproxy {
    fn start(dir: &Path, port: u16, backend_port: u16) -> Haproxy {
        let cfg = dir.join("haproxy.cfg");
        fs::write(
            &cfg,
            format!(
                "global\n\
                 \tmaxconn 100\n\
                 defaults\n\
                 \tmode tcp\n\
                 \ttimeout connect 5s\n\
                 \ttimeout client 30s\n\
                 \ttimeout server 30s\n\
                 frontend tls\n\
                 \tbind 127.0.0.1:{port}\n\
                 \ttcp-request inspect-delay 5s\n\
                 \ttcp-request content accept if {{ req_ssl_hello_type 1 }}\n\
                 \tuse_backend ca if {{ req_ssl_sni -i ca.test }}\n\
                 \tdefault_backend ca\n\
                 backend ca\n\
                 \tserver certdock 127.0.0.1:{backend_port}\n"
            ),
        )
        .unwrap();
        let log = dir.join("haproxy.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(HAPROXY)
            .args(["-db", "-f", s(&cfg)])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("haproxy is installed at /usr/sbin/haproxy");
        let mut h = Haproxy { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = h.child.try_wait() {
                panic!(
                    "haproxy exited with {status}: {}",
                    fs::read_to_string(&h.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "haproxy never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn renewal_over_mtls_works_through_haproxy_passthrough_with_and_without_sni() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(d);
    let port = free_port();
    let _haproxy = Haproxy::start(d, port, serve.port);

    // A certificate to renew, signed directly.
    let token = serve.token("sign", "svc", &[]);
    let (_, csr) = openssl_csr(d, "svc", "svc.test", &["DNS:svc.test"]);
    let body = body_file(d, "sign", &json!({"csr": csr}));
    let (code, answer) = serve.post_json(
        "/v1/sign",
        &format!("Authorization: Bearer {token}"),
        &format!("@{}", body.display()),
    );
    assert_eq!(code, 200, "{answer}");
    let mut last = save_cert(d, "svc", &answer)["serial"].clone();
    let key = d.join("svc.key");

    let resolve = format!("ca.test:{port}:127.0.0.1");
    let by_name = format!("https://ca.test:{port}");
    let by_ip = format!("https://127.0.0.1:{port}");
    let cases: [(&str, &str, &[&str]); 2] = [
        ("with SNI ca.test", &by_name, &[&resolve]),
        ("without SNI (by IP)", &by_ip, &[]),
    ];
    for (i, (what, base, resolve)) in cases.into_iter().enumerate() {
        let current = d.join(if i == 0 { "svc.pem" } else { "svc-0.pem" });
        let (code, health) = curl_at(base, &serve.roots, resolve, &["/health"], &[]);
        assert_eq!(code, 200, "{what}: {health}");
        let (code, answer) = curl_at(
            base,
            &serve.roots,
            resolve,
            &[
                "/v1/renew",
                "-H",
                "Content-Type: application/json",
                "--data",
                "{}",
            ],
            &["--cert", s(&current), "--key", s(&key)],
        );
        assert_eq!(code, 200, "{what}: {answer}");
        let renewed = save_cert(d, &format!("svc-{i}"), &answer);
        assert_ne!(renewed["serial"], last, "{what}: a new serial");
        assert!(
            x509(&d.join(format!("svc-{i}.pem")), &["-ext", "subjectAltName"])
                .contains("DNS:svc.test"),
            "{what}: same names"
        );
        last = renewed["serial"].clone();
        // Without the client certificate, through the proxy too: 401.
        let (code, _) = curl_at(
            base,
            &serve.roots,
            resolve,
            &[
                "/v1/renew",
                "-H",
                "Content-Type: application/json",
                "--data",
                "{}",
            ],
            &[],
        );
        assert_eq!(code, 401, "{what}");
    }
}
