//! `dashboards/certdock.json`: every query names a series a real `/metrics` scrape of
//! `certdock run` exports, groups by labels those series carry, and covers what operators watch.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::peers::free_port;
use common::process::{Certdock, eventually};
use common::{
    ContainerSpec, body_file, certdock, curl_at, docker, label_prefix, ok, openssl_csr, s,
};
use serde_json::{Value, json};

const DASHBOARD: &str = include_str!("../dashboards/certdock.json");

/// Every PromQL text in the dashboard: panel `expr`s and the variables' queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

/// The `certdock_…` identifiers in a query.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("certdock_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The labels of each `by (…)` clause in a query.
fn by_labels(query: &str) -> BTreeSet<String> {
    query
        .split("by (")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .flat_map(|labels| labels.split(',').map(|l| l.trim().to_string()))
        .collect()
}

/// A scrape: each sample name with the label names its samples carry, and each `# TYPE`.
struct Scrape {
    samples: BTreeMap<String, BTreeSet<String>>,
    types: BTreeMap<String, String>,
}

fn parse(text: &str) -> Scrape {
    let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut parts = decl.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_string(), kind.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = samples.entry(line[..name_end].to_string()).or_default();
        if let Some(inner) = line[name_end..]
            .strip_prefix('{')
            .and_then(|r| r.split('}').next())
        {
            for pair in inner.split(',').filter(|p| !p.is_empty()) {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.trim().to_string());
                }
            }
        }
    }
    Scrape { samples, types }
}

impl Scrape {
    /// A name a query may use: a sample's, or a declared family's with the suffix its type
    /// adds (`_total` for counters; `_bucket`, `_sum`, `_count` for histograms).
    fn exports(&self, name: &str) -> bool {
        if self.samples.contains_key(name) {
            return true;
        }
        let declared = |family: &str, kinds: &[&str]| {
            self.types
                .get(family)
                .is_some_and(|k| kinds.contains(&k.as_str()))
        };
        let suffixed = |suffix: &str, kinds: &[&str]| {
            name.strip_suffix(suffix)
                .is_some_and(|family| declared(family, kinds))
        };
        declared(name, &["gauge", "unknown"])
            || suffixed("_total", &["counter"])
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| suffixed(s, &["histogram", "summary"]))
    }
}

/// A scrape of `certdock run` after it did a bit of everything: issued for a labelled
/// container (Docker events, a resync, proxy files written), signed for a token, renewed over
/// mTLS and answered a forward-auth request. A family without samples is not exported at all.
async fn scrape_of_a_busy_run() -> String {
    let d = docker().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["--listen", &listen, "--api-name", "ca.test,127.0.0.1"];
    let cd = Certdock::start(
        "run",
        &[&args[..], &["--label-prefix", label_prefix()]].concat(),
        &[],
    );
    let _web = ContainerSpec::default()
        .label("certdock.enable", "true")
        .label("certdock.name", "graf-web")
        .label("certdock.delivery", "volume")
        .run(&d)
        .await;
    let certs = cd.out.join("certs/graf-web");
    let yml = cd.out.join("traefik/certdock.yml");
    eventually(
        "the container's certificate and the proxy file",
        Duration::from_secs(30),
        || async { (certs.join("key.pem").is_file() && yml.is_file()).then_some(()) },
    )
    .await;
    let base = format!("https://ca.test:{port}");
    let resolve = format!("ca.test:{port}:127.0.0.1");
    let roots = cd.out.join("ca.pem");
    let curl = |args: &[&str], extra: &[&str]| curl_at(&base, &roots, &[&resolve], args, extra);

    let state = s(&cd.state);
    let token = ok(&certdock(&[
        "token",
        "create",
        "--state-dir",
        state,
        "--name",
        "graf",
    ]));
    let (_, csr) = openssl_csr(cd.dir.path(), "graf", "graf.test", &["DNS:graf.test"]);
    let body = body_file(cd.dir.path(), "sign", &json!({"csr": csr}));
    let auth = format!("Authorization: Bearer {}", token.trim());
    let data = format!("@{}", body.display());
    let (code, answer) = curl(
        &[
            "/v1/sign",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data",
            &data,
        ],
        &[],
    );
    assert_eq!(code, 200, "{answer}");
    let (cert, key) = (certs.join("fullchain.pem"), certs.join("key.pem"));
    let mtls = ["--cert", s(&cert), "--key", s(&key)];
    let (code, answer) = curl(&["/v1/renew", "-X", "POST"], &mtls);
    assert_eq!(code, 200, "{answer}");
    let _ = curl(&["/v1/forward-auth/graf-web"], &[]);
    let (code, text) = curl(&["/metrics"], &[]);
    assert_eq!(code, 200, "{text}");
    text
}

#[tokio::test]
async fn every_dashboard_query_uses_series_and_labels_that_metrics_exports() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut all = Vec::new();
    queries(&dashboard, &mut all);
    assert!(all.len() >= 10, "{all:?}");
    let text = scrape_of_a_busy_run().await;
    let scrape = parse(&text);

    let mut used = BTreeSet::new();
    for query in &all {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a query without a certdock series: {query}"
        );
        for name in names {
            assert!(
                scrape.exports(&name),
                "{name} (in {query}) is not in /metrics:\n{text}"
            );
            if let Some(carried) = scrape.samples.get(&name) {
                for label in by_labels(query) {
                    assert!(
                        carried.contains(&label),
                        "{name} has no label {label}: {query}"
                    );
                }
            }
            used.insert(name);
        }
    }
    // What the dashboard is for (issue 16): each of these is on it.
    for wanted in [
        "certdock_certificates_managed",
        "certdock_earliest_expiry_seconds",
        "certdock_certificate_expiry_seconds",
        "certdock_issuances_total",
        "certdock_renewals_total",
        "certdock_errors_total",
        "certdock_docker_events_total",
        "certdock_resyncs_total",
        "certdock_proxy_config_writes_total",
        "certdock_http_requests_total",
    ] {
        assert!(used.contains(wanted), "{wanted} is not on the dashboard");
    }
}

#[test]
fn the_query_reader_finds_names_and_grouping_labels() {
    let q = "sum by (endpoint, code) (rate(certdock_http_requests_total{job=~\"$job\"}[5m]))";
    assert_eq!(
        metric_names(q),
        BTreeSet::from(["certdock_http_requests_total".to_string()])
    );
    assert_eq!(
        by_labels(q),
        BTreeSet::from(["endpoint".to_string(), "code".to_string()])
    );
    let scrape = parse("# TYPE certdock_x counter\n# TYPE certdock_g gauge\ncertdock_g 1\n");
    assert!(scrape.exports("certdock_x_total") && scrape.exports("certdock_g"));
    assert!(!scrape.exports("certdock_x") && !scrape.exports("certdock_nope"));
}
