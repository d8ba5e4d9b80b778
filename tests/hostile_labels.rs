//! `certdock run` against the real engine with hostile labels: each bad container is refused with
//! an error naming its label, the good one next to them is served, and nothing is written
//! outside the output directory (on the host) or outside the asked directory (in containers).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::{Certdock, eventually};
use common::{ContainerSpec, TestContainer, docker};

/// Every path under `dir` (files, directories, links), relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}

/// What lies in the test directory outside the state and output directories, logs aside.
fn outside(cd: &Certdock) -> BTreeSet<PathBuf> {
    tree(cd.dir.path())
        .into_iter()
        .filter(|p| !p.starts_with("state") && !p.starts_with("out"))
        .filter(|p| p.extension().is_none_or(|e| e != "log"))
        .collect()
}

#[tokio::test]
async fn hostile_labels_are_each_refused_by_name_while_a_good_container_is_served_and_nothing_leaves_out()
 {
    let d = docker().await;
    // A prefix of its own: containers of tests running beside this one are not read.
    let prefix = format!("hostile{:08x}", rand::random::<u32>());
    let label = |suffix: &str| format!("{prefix}.{suffix}");
    let cd = Certdock::start(
        "run",
        &[
            "--listen",
            "127.0.0.1:0",
            "--resync-interval",
            "3s",
            "--label-prefix",
            &prefix,
            "--allow-domain",
            "internal,10.0.0.0/8",
            "--api-name",
            "ca.internal",
        ],
        &[],
    );
    let before = outside(&cd);

    let long_name = "a".repeat(300);
    // (label suffix that must be blamed, labels besides `enable=true`)
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "sans",
            vec![("name", "out.internal"), ("sans", "web.example.com")],
        ),
        (
            "sans",
            vec![("name", "wild.internal"), ("sans", "*.apps.internal")],
        ),
        (
            "sans",
            vec![("name", "api.internal"), ("sans", "ca.internal")],
        ),
        ("name", vec![("name", "../../etc")]),
        ("name", vec![("name", "/etc")]),
        ("name", vec![("name", "a/b")]),
        ("name", vec![("name", &long_name)]),
        ("name", vec![("name", "bücher")]),
        ("name", vec![("name", "web.example.com")]),
        (
            "path",
            vec![("name", "p1.internal"), ("path", "/run/../etc")],
        ),
        (
            "path",
            vec![("name", "p2.internal"), ("path", "run/certdock")],
        ),
        (
            "path",
            vec![("name", "p3.internal"), ("path", "/proc/self")],
        ),
        ("enable", vec![("enable", "yes")]),
        (
            "sans",
            vec![("name", "s.internal"), ("sans", "bad_name.internal")],
        ),
        ("usage", vec![("name", "u.internal"), ("usage", "peer")]),
        ("ttl", vec![("name", "t.internal"), ("ttl", "banana")]),
        (
            "delivery",
            vec![("name", "d.internal"), ("delivery", "email")],
        ),
        (
            "owner",
            vec![("name", "o.internal"), ("owner", "nginx:nginx")],
        ),
        (
            "reload",
            vec![("name", "r.internal"), ("reload", "SIGKILL")],
        ),
        ("network", vec![("name", "n.internal"), ("network", "1")]),
        (
            "traefik.hosts",
            vec![("name", "h.internal"), ("traefik.hosts", "on")],
        ),
    ];
    let mut bad: Vec<(String, TestContainer)> = Vec::new();
    for (blamed, labels) in &cases {
        let mut spec = ContainerSpec::default().label(&label("enable"), "true");
        for (k, v) in labels {
            spec = spec.label(&label(k), v);
        }
        bad.push((label(blamed), spec.run(&d).await));
    }
    let good = ContainerSpec::default()
        .label(&label("enable"), "true")
        .label(&label("name"), "good.internal")
        .label(&label("delivery"), "volume")
        .run(&d)
        .await;
    let in_container = ContainerSpec::default()
        .label(&label("enable"), "true")
        .label(&label("name"), "inside.internal")
        .label(&label("path"), "/run/certs/")
        .run(&d)
        .await;

    let status = eventually(
        "status shows the good certificates and every refusal",
        Duration::from_secs(40),
        || async {
            let s = cd.status();
            let served = |c: &TestContainer| {
                s.iter()
                    .any(|e| e["container"] == c.name.as_str() && e["serial"].is_string())
            };
            let refused = bad.iter().all(|(_, c)| {
                s.iter()
                    .any(|e| e["container"] == c.name.as_str() && e["error"].is_string())
            });
            (served(&good) && served(&in_container) && refused).then_some(s)
        },
    )
    .await;

    for ((blamed, c), (_, labels)) in bad.iter().zip(&cases) {
        let entry = status
            .iter()
            .find(|e| e["container"] == c.name.as_str())
            .unwrap();
        let error = entry["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("label {blamed}=")),
            "{labels:?}: {error}"
        );
        assert!(entry["serial"].is_null(), "{labels:?} got a certificate");
        assert!(error.len() < 1000, "bounded: {error}");
        let (code, _) = c.exec(&d, &["test", "-e", "/run/certdock"]).await;
        assert_ne!(code, 0, "{labels:?}: nothing delivered");
    }
    for f in ["/etc/cert.pem", "/etc/key.pem", "/etc/..data"] {
        let (code, _) = bad[9].1.exec(&d, &["test", "-e", f]).await;
        assert_ne!(code, 0, "{f} written in the container");
    }
    let out = eventually(
        "the delivery in /run/certs",
        Duration::from_secs(20),
        || async {
            let (code, out) = in_container.exec(&d, &["ls", "-A", "/run/certs"]).await;
            (code == 0 && out.contains("key.pem")).then_some(out)
        },
    )
    .await;
    let files: BTreeSet<&str> = out.split_whitespace().collect();
    assert_eq!(
        files,
        BTreeSet::from([
            "..certdock-a",
            "..data",
            "ca.pem",
            "cert.pem",
            "chain.pem",
            "fullchain.pem",
            "key.pem"
        ]),
        "{out}"
    );

    // On the host: OUT holds only certdock's own entries and the one volume delivery.
    let top: BTreeSet<String> = std::fs::read_dir(&cd.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected = ["ca.pem", "caddy", "certs", "traefik", "traefik-client"];
    assert!(
        top.iter().all(|t| expected.contains(&t.as_str())),
        "unexpected entries in OUT: {top:?}"
    );
    let certs: Vec<String> = std::fs::read_dir(cd.out.join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(certs, ["good.internal"]);
    assert!(cd.out.join("certs/good.internal/key.pem").is_file());
    assert_eq!(outside(&cd), before, "nothing written beside OUT and STATE");
    for p in ["/etc/cert.pem", "/etc/key.pem", "/etc/..data"] {
        assert!(!Path::new(p).exists(), "{p} on the host");
    }
}
