//! `--help` as a newcomer reads it: every option says what it does and what it defaults to.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_certdock"))
        .args(args)
        .arg("-h")
        .env_clear()
        .output()
        .expect("run certdock");
    assert!(out.status.success(), "{args:?} -h failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// Each option of a `-h` with its help: `--flag <VALUE>  text…`, where clap puts the text on
/// the next line when the line would be too wide.
fn option_lines(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let is_option = |l: &str| l.starts_with("--") || l.starts_with("-h,");
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !is_option(l) {
            continue;
        }
        match lines.get(i + 1) {
            Some(next) if !l.contains("  ") && !next.is_empty() && !is_option(next) => {
                out.push(format!("{l}  {next}"))
            }
            _ => out.push(l.to_string()),
        }
    }
    out
}

#[test]
fn run_help_shows_every_default_of_the_spec() {
    let text = help(&["run"]);
    for (flag, default) in [
        ("--state-dir", "/var/lib/certdock"),
        ("--out-dir", "/var/lib/certdock/out"),
        ("--listen", "0.0.0.0:8443"),
        ("--default-ttl", "24h"),
        ("--min-ttl", "5m"),
        ("--max-ttl", "30d"),
        ("--resync-interval", "60s"),
        ("--label-prefix", "certdock"),
        ("--log-format", "text"),
        ("--api-name", "the host name"),
        ("--proxy-network", "none"),
        ("--handshake-timeout", "10s"),
        ("--header-timeout", "10s"),
        ("--body-timeout", "10s"),
        ("--max-connections", "three quarters of the open-file limit"),
    ] {
        let line = option_lines(&text)
            .into_iter()
            .find(|l| l.starts_with(&format!("{flag} ")))
            .unwrap_or_else(|| panic!("{flag} missing from `run --help`:\n{text}"));
        assert!(
            line.contains(&format!("[default: {default}")),
            "{flag} does not show its default {default}: {line}"
        );
    }
}

#[test]
fn every_option_of_every_command_has_a_line_of_help() {
    for cmd in [
        &["run"][..],
        &["serve"],
        &["agent"],
        &["init"],
        &["issue"],
        &["status"],
        &["token", "create"],
        &["revoke"],
    ] {
        let text = help(cmd);
        // A short help line is `--flag <VALUE>` then at least two spaces and the text.
        for line in option_lines(&text) {
            let described = line
                .split_once("  ")
                .is_some_and(|(_, rest)| !rest.trim().is_empty());
            assert!(described, "{cmd:?}: an option without help: {line:?}");
        }
    }
}

#[test]
fn the_defaults_shown_are_the_defaults_applied() {
    // `certdock settings` prints the effective settings: what --help promises must be what runs.
    let dir = std::env::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_certdock"))
        .args(["settings"])
        .env_clear()
        .current_dir(dir)
        .output()
        .expect("run certdock");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("settings is JSON");
    let text = v.to_string();
    for expected in ["/var/lib/certdock", "0.0.0.0:8443", "\"certdock\""] {
        assert!(text.contains(expected), "settings lack {expected}: {text}");
    }
}

#[test]
fn a_token_name_that_cannot_name_an_agent_is_refused_when_the_token_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_certdock"))
            .args(args)
            .arg("--state-dir")
            .arg(&state)
            .env_clear()
            .output()
            .expect("run certdock")
    };
    assert!(run(&["init"]).status.success());
    let out = run(&["token", "create", "--kind", "agent", "--name", "../../etc"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--name") && err.contains("agent"), "{err}");
    assert!(
        !state.join("tokens.log").exists()
            || std::fs::read_to_string(state.join("tokens.log"))
                .unwrap()
                .is_empty()
    );
    let out = run(&[
        "token",
        "create",
        "--kind",
        "agent",
        "--name",
        "host1.agents",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
