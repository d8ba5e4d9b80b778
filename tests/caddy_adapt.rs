//! The Caddy snippet as Caddy itself reads it: `caddy adapt` on a Caddyfile importing it.

use std::path::Path;
use std::process::Command;

use certdock::proxy::caddy::render_snippet;
use serde_json::Value;

fn find<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    match v {
        Value::Object(o) => o.get(key).or_else(|| o.values().find_map(|x| find(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

fn write_ca(dir: &Path, name: &str) -> String {
    let ca = rcgen::generate_simple_self_signed(vec![format!("{name}.test")]).expect("test CA");
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, ca.cert.pem()).expect("write CA");
    path.to_str().expect("temp paths are UTF-8").to_string()
}

#[test]
fn caddy_adapts_the_snippet_to_require_and_verify_with_every_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Caddy 2.6 reads the CA files while adapting, so they must be real certificates.
    let cas = vec![
        write_ca(dir.path(), "root"),
        write_ca(dir.path(), "intermediate"),
    ];
    let snippet = dir.path().join("mtls.caddy");
    std::fs::write(&snippet, render_snippet(&cas).expect("renders")).expect("write snippet");
    let caddyfile = dir.path().join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!(
            "import {}\n\nexample.test {{\n\timport mtls\n\trespond \"ok\"\n}}\n",
            snippet.display()
        ),
    )
    .expect("write Caddyfile");

    let output = Command::new("caddy")
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var_os("CI").is_some() {
                panic!("caddy is not installed, and CI is set: this test must run in CI");
            }
            eprintln!("note: caddy is not installed; skipping the `caddy adapt` check");
            return;
        }
        Err(e) => panic!("running caddy failed: {e}"),
    };
    assert!(
        output.status.success(),
        "caddy adapt failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("caddy prints JSON");
    let auth = find(&json, "client_authentication").expect("a client_authentication block");
    assert_eq!(auth["mode"], "require_and_verify", "{auth:#}");
    let trusted = auth["trusted_ca_certs"].as_array().map_or(0, Vec::len);
    assert_eq!(trusted, 2, "one trusted CA per file: {auth:#}");
}
