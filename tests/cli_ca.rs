//! The CA from the command line, checked with openssl as an independent peer.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn certdock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certdock"))
        .args(args)
        .env_remove("CERTDOCK_STATE_DIR")
        .output()
        .expect("run certdock")
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it)")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn init(dir: &Path) -> PathBuf {
    let state = dir.join("S");
    ok(&certdock(&["init", "--state-dir", s(&state)]));
    state
}

fn tree_snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = fs::metadata(&p).unwrap().permissions().mode();
                out.push((p.clone(), fs::read(&p).unwrap(), mode));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_creates_0600_keys_and_a_second_init_refuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    let keys: Vec<_> = tree_snapshot(&state)
        .into_iter()
        .filter(|(p, _, _)| p.extension().is_some_and(|e| e == "key"))
        .collect();
    assert_eq!(keys.len(), 2, "root and intermediate keys");
    for (p, _, mode) in &keys {
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
    }
    let before = tree_snapshot(&state);
    let again = certdock(&["init", "--state-dir", s(&state)]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(err.lines().count(), 1, "one-line reason: {err}");
    assert_eq!(tree_snapshot(&state), before);
}

fn pubkey_of_cert(cert: &Path) -> String {
    ok(&openssl(&["x509", "-in", s(cert), "-noout", "-pubkey"]))
}

fn pubkey_of_key(key: &Path) -> String {
    ok(&openssl(&["pkey", "-in", s(key), "-pubout"]))
}

#[test]
fn issue_writes_five_files_that_openssl_verifies_with_exactly_the_asked_names() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    let out = dir.path().join("D");
    ok(&certdock(&[
        "issue",
        "web",
        "--state-dir",
        s(&state),
        "--san",
        "web.internal",
        "--san",
        "10.1.2.3",
        "--usage",
        "server",
        "--out",
        s(&out),
    ]));
    for f in [
        "cert.pem",
        "key.pem",
        "chain.pem",
        "fullchain.pem",
        "ca.pem",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let cert = out.join("cert.pem");
    ok(&openssl(&[
        "verify",
        "-CAfile",
        s(&out.join("ca.pem")),
        "-untrusted",
        s(&out.join("chain.pem")),
        "-purpose",
        "sslserver",
        s(&cert),
    ]));
    let text = ok(&openssl(&["x509", "-in", s(&cert), "-noout", "-text"]));
    assert!(
        text.contains("DNS:web, DNS:web.internal, IP Address:10.1.2.3"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"));
    assert!(
        !text.contains("TLS Web Client Authentication"),
        "server usage only"
    );
    // The client purpose must fail for a server-only certificate.
    let client = openssl(&[
        "verify",
        "-CAfile",
        s(&out.join("ca.pem")),
        "-untrusted",
        s(&out.join("chain.pem")),
        "-purpose",
        "sslclient",
        s(&cert),
    ]);
    assert!(!client.status.success());
    // Lifetime: 24 h plus the 1 minute backdate.
    let start = ok(&openssl(&[
        "x509",
        "-in",
        s(&cert),
        "-noout",
        "-startdate",
        "-enddate",
        "-dateopt",
        "iso_8601",
    ]));
    let times: Vec<time::OffsetDateTime> = start
        .lines()
        .map(|l| {
            let v = l.split_once('=').unwrap().1.trim();
            time::PrimitiveDateTime::parse(
                v.trim_end_matches('Z'),
                &time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
            )
            .unwrap()
            .assume_utc()
        })
        .collect();
    assert_eq!((times[1] - times[0]).whole_seconds(), 24 * 3600 + 60);
    assert_eq!(
        fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(pubkey_of_cert(&cert), pubkey_of_key(&out.join("key.pem")));
    // A second issuance: a different serial.
    let out2 = dir.path().join("D2");
    ok(&certdock(&[
        "issue",
        "web",
        "--state-dir",
        s(&state),
        "--out",
        s(&out2),
    ]));
    let serial = |p: &Path| ok(&openssl(&["x509", "-in", s(p), "-noout", "-serial"]));
    assert_ne!(serial(&cert), serial(&out2.join("cert.pem")));
}

#[test]
fn bad_ttls_and_names_outside_policy_fail_with_the_rule_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    for (ttl, needle) in [("banana", "banana"), ("400d", "max")] {
        let out = dir.path().join(format!("D-{ttl}"));
        let o = certdock(&[
            "issue",
            "web",
            "--state-dir",
            s(&state),
            "--ttl",
            ttl,
            "--out",
            s(&out),
        ]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("ttl") && err.contains(needle), "{err}");
        assert!(!out.exists(), "nothing written for --ttl {ttl}");
    }
    let out = dir.path().join("D-policy");
    let o = certdock(&[
        "issue",
        "web",
        "--state-dir",
        s(&state),
        "--allow-domain",
        "internal",
        "--san",
        "web.example.com",
        "--out",
        s(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("--allow-domain internal"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_p12_opens_with_its_password_in_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    let pw = dir.path().join("pw");
    fs::write(&pw, "s3cret pass\n").unwrap();
    let p12 = dir.path().join("web.p12");
    ok(&certdock(&[
        "issue",
        "phone",
        "--state-dir",
        s(&state),
        "--usage",
        "client",
        "--p12",
        s(&p12),
        "--p12-password-file",
        s(&pw),
    ]));
    assert_eq!(
        fs::metadata(&p12).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = ok(&openssl(&[
        "pkcs12",
        "-in",
        s(&p12),
        "-passin",
        "pass:s3cret pass",
        "-nodes",
    ]));
    assert!(
        o.contains("BEGIN CERTIFICATE") && o.contains("PRIVATE KEY"),
        "{o}"
    );
    let wrong = openssl(&["pkcs12", "-in", s(&p12), "-passin", "pass:nope", "-nodes"]);
    assert!(!wrong.status.success());
}

#[test]
fn status_json_is_an_array_with_the_issued_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    ok(&certdock(&[
        "issue",
        "web",
        "--state-dir",
        s(&state),
        "--out",
        s(&dir.path().join("D")),
    ]));
    let out = ok(&certdock(&["status", "--json", "--state-dir", s(&state)]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = v.as_array().expect("an array");
    assert_eq!(arr.len(), 1);
    for key in [
        "name",
        "container",
        "sans",
        "usage",
        "serial",
        "not_after",
        "next_renewal",
        "error",
    ] {
        assert!(arr[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(arr[0]["name"], "web");
    assert!(arr[0]["error"].is_null());
}

#[test]
fn revoked_certificates_show_as_revoked_in_status_and_unknown_serials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    ok(&certdock(&[
        "issue",
        "web",
        "--state-dir",
        s(&state),
        "--out",
        s(&dir.path().join("D")),
    ]));
    let serial = ok(&openssl(&[
        "x509",
        "-in",
        s(&dir.path().join("D/cert.pem")),
        "-noout",
        "-serial",
    ]));
    let serial = serial.trim().trim_start_matches("serial=");
    ok(&certdock(&["revoke", serial, "--state-dir", s(&state)]));
    // Shown as revoked until it expires.
    let out = ok(&certdock(&["status", "--json", "--state-dir", s(&state)]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{out}");
    assert!(v[0]["revoked_at"].is_string(), "{out}");
    let o = certdock(&["revoke", "00ff", "--state-dir", s(&state)]);
    assert!(!o.status.success());
}

#[test]
fn two_processes_issuing_at_once_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let state = init(dir.path());
    let st = state.clone();
    let run = move |tag: &'static str| {
        let st = st.clone();
        std::thread::spawn(move || {
            for i in 0..10 {
                let o = Command::new(env!("CARGO_BIN_EXE_certdock"))
                    .args([
                        "issue",
                        &format!("{tag}{i}"),
                        "--state-dir",
                        st.to_str().unwrap(),
                    ])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            }
        })
    };
    let (a, b) = (run("a"), run("b"));
    a.join().unwrap();
    b.join().unwrap();
    let out = ok(&certdock(&["status", "--json", "--state-dir", s(&state)]));
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(v.len(), 20);
    let serials: std::collections::HashSet<_> = v
        .iter()
        .map(|e| e["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serials.len(), 20);
}

#[test]
fn an_imported_openssl_root_and_an_ed25519_ca_both_issue_verifiable_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("root.key");
    let crt = dir.path().join("root.pem");
    ok(&openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-out",
        s(&crt),
        "-days",
        "30",
        "-subj",
        "/CN=Imported Root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
    let state = dir.path().join("S");
    ok(&certdock(&[
        "init",
        "--state-dir",
        s(&state),
        "--import-root",
        s(&crt),
        "--import-key",
        s(&key),
    ]));
    let out = dir.path().join("D");
    ok(&certdock(&[
        "issue",
        "svc",
        "--state-dir",
        s(&state),
        "--out",
        s(&out),
    ]));
    ok(&openssl(&[
        "verify",
        "-CAfile",
        s(&crt),
        "-untrusted",
        s(&out.join("chain.pem")),
        s(&out.join("cert.pem")),
    ]));

    let state2 = dir.path().join("S2");
    ok(&certdock(&[
        "init",
        "--state-dir",
        s(&state2),
        "--key-type",
        "ed25519",
    ]));
    let out2 = dir.path().join("D2");
    ok(&certdock(&[
        "issue",
        "svc",
        "--state-dir",
        s(&state2),
        "--key-type",
        "ed25519",
        "--out",
        s(&out2),
    ]));
    ok(&openssl(&[
        "verify",
        "-CAfile",
        s(&out2.join("ca.pem")),
        "-untrusted",
        s(&out2.join("chain.pem")),
        s(&out2.join("cert.pem")),
    ]));
    let text = ok(&openssl(&[
        "x509",
        "-in",
        s(&out2.join("cert.pem")),
        "-noout",
        "-text",
    ]));
    assert!(text.contains("ED25519"), "{text}");
}

#[test]
fn settings_come_from_flag_then_env_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    fs::write(
        &file,
        "state_dir = \"/file\"\nout_dir = \"/file-out\"\nlisten = \"127.0.0.1:9000\"\n",
    )
    .unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_certdock"));
        c.arg("settings").arg("--config").arg(&file).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let v: serde_json::Value = serde_json::from_str(&ok(&c.output().unwrap())).unwrap();
        v
    };
    let v = run(&[], &[]);
    assert_eq!(v["state_dir"], "/file");
    assert_eq!(v["listen"], "127.0.0.1:9000");
    let v = run(&[("CERTDOCK_STATE_DIR", "/env")], &[]);
    assert_eq!(v["state_dir"], "/env");
    assert_eq!(v["out_dir"], "/file-out");
    let v = run(&[("CERTDOCK_STATE_DIR", "/env")], &["--state-dir", "/flag"]);
    assert_eq!(v["state_dir"], "/flag");
    assert_eq!(v["default_ttl"], "1d");
}
