//! Debian's headless Chromium renders `GET /ui` at 400 and 1920 px wide, from one-time login
//! links: screenshots, the rendered DOM (a row per certificate, a refresh that landed) and no
//! resource from any other origin.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::ui::{listed_names, populate, status_json};
use common::{Serve, s};

/// Where the screenshots stay after the run, for a human to look at.
fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

/// Headless Chromium on a one-time login link (a fresh admin token each run: the link spends
/// it, sets the session cookie and redirects to `/ui`). Any host but 127.0.0.1 fails to
/// resolve, so a request leaving the host would fail rather than pass unnoticed.
fn chromium(serve: &Serve, profile: &Path, args: &[&str]) -> std::process::Output {
    let token = serve.token("admin", "browser", &["--ttl", "5m"]);
    let link = format!("{}/ui/login/{token}", serve.url_ip());
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            // The test CA is not in Chromium's trust store; curl checks the chain elsewhere.
            "--ignore-certificate-errors",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .arg(&link)
        .output()
        .expect("chromium runs (apt-get install chromium; scripts/test.sh does)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The width and height a PNG's IHDR chunk says.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

/// Every `src=` and `href=` value in a document.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"", "src='", "href='", "action=\""] {
        let quote = attr.chars().last().unwrap_or('"');
        for rest in html.split(attr).skip(1) {
            out.push(rest.split(quote).next().unwrap_or_default().to_string());
        }
    }
    out
}

#[test]
fn chromium_renders_every_certificate_at_400_and_1920_px_without_leaving_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    populate(&serve);
    let names = listed_names(&status_json(&serve));
    let shots = shots_dir();
    for (width, height) in [(400, 900), (1920, 1200)] {
        let png = shots.join(format!("ui-{width}.png"));
        let _ = std::fs::remove_file(&png);
        // Chromium has once (in 12 suite runs) exited 0 without writing its screenshot, in
        // 2 s on a fresh clone; what it said is kept, and it gets one more try.
        let mut said = Vec::new();
        for attempt in 0..2 {
            let profile = dir.path().join(format!("profile-{width}-{attempt}"));
            let out = chromium(
                &serve,
                &profile,
                &[
                    &format!("--window-size={width},{height}"),
                    &format!("--screenshot={}", s(&png)),
                    "--virtual-time-budget=3000",
                ],
            );
            said.push(String::from_utf8_lossy(&out.stderr).into_owned());
            if png.exists() {
                break;
            }
            eprintln!("chromium wrote no {}: {}", png.display(), said[attempt]);
        }
        assert!(png.exists(), "no screenshot; chromium said: {said:#?}");
        assert_eq!(png_size(&png), (width, height), "{}", png.display());
    }

    // 20 s of virtual time: the page's 15 s refresh replaces <main> once.
    let profile = dir.path().join("profile-dom");
    let out = chromium(
        &serve,
        &profile,
        &["--dump-dom", "--virtual-time-budget=20000"],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-refreshed=\"1\""),
        "the refresh landed: {dom}"
    );
    let status = status_json(&serve);
    for entry in status.as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let row = if entry["usage"] == "" {
            "data-refused"
        } else {
            "data-cert"
        };
        assert!(
            dom.contains(&format!("<tr {row}=\"{name}\"")),
            "{name} row: {dom}"
        );
    }
    assert!(!names.is_empty());

    // The page names nothing outside its origin: no absolute URL, no protocol-relative one,
    // no stylesheet, image or script file at all (style and script are inline).
    for reference in references(&dom) {
        assert!(
            reference.starts_with('/') && !reference.starts_with("//"),
            "{reference}"
        );
    }
    for needle in [
        "http://", "https://", "<link", "<img", "<iframe", "@import", "url(",
    ] {
        assert!(!dom.contains(needle), "{needle} in the page: {dom}");
    }
}
