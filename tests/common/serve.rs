//! Helpers for tests against a real `certdock serve`: spawn it, wait for it, talk to it with
//! curl and openssl, and kill it whatever happens (Drop).
#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The API names every test server gets: a DNS name for SNI and 127.0.0.1 for no SNI.
pub const API_NAMES: &str = "ca.test,127.0.0.1";

/// Below this, the kernel never picks a connection's local port (Linux's default range starts
/// at 32768; read from /proc when it says otherwise).
const EPHEMERAL_FLOOR: u16 = 32768;
/// Where picked ports start: clear of well-known services.
const PICK_FROM: u16 = 10_000;

/// A port that was free a moment ago on every address, for a server a test starts later. Picked
/// at random below the kernel's ephemeral range: a port the kernel hands out (a bind to port 0)
/// can be taken meanwhile by any outgoing connection's local end, and a peer that binds it next
/// fails (seen with Caddy: "address already in use").
pub fn free_port() -> u16 {
    let floor = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|low| *low > PICK_FROM + 1_000)
        .unwrap_or(EPHEMERAL_FLOOR);
    for _ in 0..1_000 {
        let port = rand::random_range(PICK_FROM..floor);
        // All addresses: peers such as Caddy listen on every interface.
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PICK_FROM}..{floor} after 1,000 tries");
}

pub fn certdock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certdock"))
        .args(args)
        .env_remove("CERTDOCK_STATE_DIR")
        .env_remove("CERTDOCK_API_NAME")
        .env_remove("CERTDOCK_LISTEN")
        .output()
        .expect("run certdock")
}

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed: {e}"))
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A running `certdock serve`, killed on drop.
pub struct Serve {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub state: PathBuf,
    log: PathBuf,
    /// `/roots.pem`, fetched once the server answered.
    pub roots: PathBuf,
}

impl Serve {
    /// A fresh CA in a fresh temporary state directory.
    pub fn start(dir: &Path) -> Serve {
        Self::start_at(dir, &dir.join("state"), free_port(), &[])
    }

    pub fn start_at(dir: &Path, state: &Path, port: u16, extra: &[&str]) -> Serve {
        Self::start_under(&[], dir, state, port, extra)
    }

    /// Like [`Serve::start_at`], run by `wrapper` (e.g. `prlimit --nofile=…`, which execs it,
    /// so the process is still certdock).
    pub fn start_under(
        wrapper: &[&str],
        dir: &Path,
        state: &Path,
        port: u16,
        extra: &[&str],
    ) -> Serve {
        let log = dir.join(format!("serve-{port}.log"));
        let log_file = fs::File::create(&log).expect("log file");
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "serve",
            "--state-dir",
            s(state),
            "--listen",
            &listen,
            "--api-name",
            API_NAMES,
        ];
        args.extend_from_slice(extra);
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(env!("CARGO_BIN_EXE_certdock"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_certdock")),
        };
        let child = command
            .args(&args)
            .env_remove("CERTDOCK_STATE_DIR")
            .env("CERTDOCK_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn certdock serve");
        let mut serve = Serve {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            state: state.to_path_buf(),
            log,
            roots: dir.join(format!("roots-{port}.pem")),
        };
        serve.wait_ready();
        serve
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("serve exited with {status}:\n{}", self.log());
            }
            let fetched = run(
                "curl",
                &[
                    "-sfk",
                    "-o",
                    s(&self.roots),
                    &format!("{}/roots.pem", self.url_ip()),
                ],
            );
            if fetched.status.success() {
                let (code, _) = self.curl(&["/health"], &[]);
                if code == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "serve never became healthy:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The root's SHA-256 fingerprint in openssl's form (colons, upper case), as users paste it.
    pub fn fingerprint(&self) -> String {
        let out = ok(&run(
            "openssl",
            &[
                "x509",
                "-noout",
                "-fingerprint",
                "-sha256",
                "-in",
                s(&self.roots),
            ],
        ));
        out.trim()
            .rsplit('=')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The process id (of certdock itself, also under an exec-ing wrapper).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `https://127.0.0.1:PORT`: no SNI is sent to an IP address.
    pub fn url_ip(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `https://ca.test:PORT`, for use with `--resolve`.
    pub fn url_name(&self) -> String {
        format!("https://ca.test:{}", self.port)
    }

    /// curl against the API by name, verified with `/roots.pem`; returns (status, body).
    /// `path_and_args[0]` is the path; the rest and `extra` are curl arguments.
    pub fn curl(&self, path_and_args: &[&str], extra: &[&str]) -> (u16, String) {
        curl_at(
            &self.url_name(),
            &self.roots,
            &[&format!("ca.test:{}:127.0.0.1", self.port)],
            path_and_args,
            extra,
        )
    }

    /// `POST path` with the JSON body in the file `@data` (curl's `--data @FILE`), its
    /// Content-Type, and `header` (e.g. `Authorization: Bearer …`) when not empty.
    pub fn post_json(&self, path: &str, header: &str, data: &str) -> (u16, String) {
        let mut args = vec![path, "-H", "Content-Type: application/json", "--data", data];
        if !header.is_empty() {
            args.extend(["-H", header]);
        }
        self.curl(&args, &[])
    }

    /// `certdock token create` against this CA's state directory.
    pub fn token(&self, kind: &str, name: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "token",
            "create",
            "--state-dir",
            s(&self.state),
            "--kind",
            kind,
            "--name",
            name,
        ];
        args.extend_from_slice(extra);
        ok(&certdock(&args)).trim().to_string()
    }

    /// Kills the server now (as a crash or a stopped container would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

/// curl with `--cacert roots`, `--resolve` entries, and `-w` for the status code.
pub fn curl_at(
    base: &str,
    roots: &Path,
    resolve: &[&str],
    path_and_args: &[&str],
    extra: &[&str],
) -> (u16, String) {
    let url = format!("{base}{}", path_and_args[0]);
    let mut args: Vec<&str> = vec!["-sS", "--cacert", s(roots), "-w", "\n%{http_code}"];
    for r in resolve {
        args.push("--resolve");
        args.push(r);
    }
    args.extend_from_slice(&path_and_args[1..]);
    args.extend_from_slice(extra);
    args.push(&url);
    let out = run("curl", &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl {url} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, body.to_string())
}

/// A P-256 key and a CSR made by `openssl req` for CN `cn` and the given SANs.
pub fn openssl_csr(dir: &Path, stem: &str, cn: &str, sans: &[&str]) -> (PathBuf, String) {
    let key = dir.join(format!("{stem}.key"));
    let csr = dir.join(format!("{stem}.csr"));
    let subj = format!("/CN={cn}");
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-out",
        s(&csr),
        "-subj",
        &subj,
    ];
    let ext;
    if !sans.is_empty() {
        ext = format!("subjectAltName={}", sans.join(","));
        args.push("-addext");
        args.push(&ext);
    }
    ok(&run("openssl", &args));
    (key, fs::read_to_string(&csr).expect("csr"))
}

/// Writes a JSON body to a file, for curl `--data @file`.
pub fn body_file(dir: &Path, stem: &str, value: &serde_json::Value) -> PathBuf {
    let p = dir.join(format!("{stem}.json"));
    fs::write(&p, value.to_string()).expect("write body");
    p
}

/// Parses a sign/renew answer, writes `cert.pem`/`chain.pem` under `stem`, returns the JSON.
pub fn save_cert(dir: &Path, stem: &str, body: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    for field in [
        "certificate",
        "chain",
        "fullchain",
        "ca",
        "serial",
        "not_after",
    ] {
        assert!(v[field].is_string(), "{field} missing in {body}");
    }
    fs::write(
        dir.join(format!("{stem}.pem")),
        v["certificate"].as_str().unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join(format!("{stem}.chain.pem")),
        v["chain"].as_str().unwrap(),
    )
    .unwrap();
    v
}

/// `openssl x509 -noout` with the given options, on a PEM file.
pub fn x509(cert: &Path, opts: &[&str]) -> String {
    let mut args = vec!["x509", "-noout", "-in", s(cert)];
    args.extend_from_slice(opts);
    ok(&run("openssl", &args))
}
