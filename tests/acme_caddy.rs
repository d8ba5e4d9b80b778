//! The ACME server against Caddy 2.6 as an ACME client (`acme_ca` + `acme_ca_root`): Caddy
//! obtains its site certificate from certdock and serves it.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Serve, free_port, run, s};

/// Kills Caddy whatever happens.
struct Caddy(std::process::Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Caddy could not bind a port picked for it: another process took it between the pick and
/// Caddy's bind (free ports are ephemeral ports, which every outgoing connection also draws).
struct PortTaken;

#[test]
fn caddy_obtains_its_site_certificate_from_certdock_and_serves_it() {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        match obtain_and_serve() {
            Ok(()) => return,
            Err(PortTaken) => eprintln!("attempt {attempt}: a picked port was taken; new ports"),
        }
    }
    panic!("every picked port was taken, {ATTEMPTS} times");
}

fn obtain_and_serve() -> Result<(), PortTaken> {
    let dir = tempfile::tempdir().unwrap();
    let (http, tls) = (free_port(), free_port());
    let (http_arg, tls_arg) = (http.to_string(), tls.to_string());
    let serve = Serve::start_at(
        dir.path(),
        &dir.path().join("state"),
        free_port(),
        &["--acme-http-port", &http_arg, "--acme-tls-port", &tls_arg],
    );
    let caddyfile = dir.path().join("Caddyfile");
    // `issuer acme`: Caddy would otherwise use its own internal CA for `localhost`.
    std::fs::write(
        &caddyfile,
        format!(
            "{{\n\tacme_ca {}/acme/directory\n\tacme_ca_root {}\n\thttp_port {http}\n\thttps_port {tls}\n\tstorage file_system {}\n\tadmin off\n\tskip_install_trust\n}}\nlocalhost {{\n\ttls {{\n\t\tissuer acme\n\t}}\n\trespond \"hello from caddy\"\n}}\n",
            serve.url_ip(),
            s(&serve.roots),
            s(&dir.path().join("caddy-data")),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("caddy.log")).unwrap();
    let mut caddy = Caddy(
        Command::new("caddy")
            .args(["run", "--config", s(&caddyfile), "--adapter", "caddyfile"])
            .env("XDG_CONFIG_HOME", dir.path().join("xdg-config"))
            .env("XDG_DATA_HOME", dir.path().join("xdg-data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("caddy is installed"),
    );
    let url = format!("https://localhost:{tls}/");
    let resolve = format!("localhost:{tls}:127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Verified against certdock's roots only: Caddy's own CA would not pass.
        let out = run(
            "curl",
            &[
                "-sS",
                // Whatever holds the port if Caddy could not bind it may never answer.
                "--max-time",
                "5",
                "--cacert",
                s(&serve.roots),
                "--resolve",
                &resolve,
                &url,
            ],
        );
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("hello from caddy")
        {
            return Ok(());
        }
        let caddy_log = std::fs::read_to_string(dir.path().join("caddy.log")).unwrap_or_default();
        if caddy.0.try_wait().is_ok_and(|exited| exited.is_some())
            && caddy_log.contains("address already in use")
        {
            return Err(PortTaken);
        }
        assert!(
            Instant::now() < deadline,
            "Caddy never served a certdock certificate: {}\ncaddy log:\n{}\nserve log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            caddy_log,
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
