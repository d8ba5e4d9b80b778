//! Helpers of `tests/helm_chart.rs`: the real helm, rendering the chart, reading manifests.
//! Included by path (`#[path]`), not through `common`: only that test uses them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A CA certificate (public only) standing in for certdock's `/roots.pem`.
pub const TEST_ROOTS_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBdDCCARmgAwIBAgIUIvKtRbGGW+5bkXAIQOFKAEeT9QowCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEdGVzdDAeFw0yNjExMjcxOTU2NTNaFw0zNjExMjQxOTU2NTNa
MA8xDTALBgNVBAMMBHRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQSDhMp
EcgdXJURntmbALvhpOTtLMTgoKoxy4CsU1xa2ydAvpVIxtmnCO/Z672dAaZK9P+Z
pQBICkMcmAIn6p+To1MwUTAdBgNVHQ4EFgQU4dnoHgdnjOF/6yB4qbgeFsGZOSUw
HwYDVR0jBBgwFoAU4dnoHgdnjOF/6yB4qbgeFsGZOSUwDwYDVR0TAQH/BAUwAwEB
/zAKBggqhkjOPQQDAgNJADBGAiEAzigY0fp+fXZZIaAzb14O430Hld/2yjY1FTdA
7WxQO3sCIQC4SHdqsxN2U9UmiQWXeba5DHHv9o5DriViwVUp9guQiw==
-----END CERTIFICATE-----
";

pub const STATE_DIR: &str = "/var/lib/certdock";
pub const NAMESPACE: &str = "certs";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart() -> PathBuf {
    repo().join("charts/certdock")
}

/// Installs helm (idempotent; the script serialises concurrent installs) and returns its path.
/// Panics when that fails: a missing helm must fail the tests, not skip them.
pub fn helm_path() -> PathBuf {
    let script = repo().join("scripts/install-helm.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (helm is required for these tests):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("install-helm.sh prints a UTF-8 path");
    let path = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("install-helm.sh prints the helm path")
            .trim(),
    );
    assert!(
        path.is_file(),
        "install-helm.sh printed {path:?}, not a file"
    );
    path
}

/// Runs helm with its cache/config/data directories in a private temporary directory, so the
/// tests neither depend on nor change the user's helm setup.
pub fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("temp dir");
    Command::new(helm_path())
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .current_dir(repo())
        .output()
        .expect("run helm")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `helm template x charts/certdock -n certs ARGS`, which must succeed; the rendered documents.
pub fn render(args: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut all = vec!["template", "x", chart.to_str().unwrap(), "-n", NAMESPACE];
    all.extend_from_slice(args);
    let out = helm(&all);
    assert!(
        out.status.success(),
        "helm {all:?} failed:\n{}",
        text(&out.stderr)
    );
    let yaml = text(&out.stdout);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml)
        .unwrap_or_else(|e| panic!("rendered manifests are not YAML ({e}):\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// `helm template` with ARGS must fail; returns stderr.
pub fn render_fails(args: &[&str]) -> String {
    let chart = chart();
    let mut all = vec!["template", "x", chart.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = helm(&all);
    assert!(
        !out.status.success(),
        "helm {all:?} should have failed but rendered:\n{}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

pub fn kinds<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

pub fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = kinds(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

pub fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in the rendered chart"))
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

pub fn arr<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not a list: {v}"))
}

pub fn env_of(container: &Value) -> Vec<(String, String)> {
    arr(&container["env"], "env")
        .iter()
        .map(|e| {
            (
                str_of(&e["name"], "env name").to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub fn env_value(container: &Value, name: &str) -> Option<String> {
    env_of(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

pub fn container<'a>(pod_spec: &'a Value, list: &str, name: &str) -> &'a Value {
    arr(&pod_spec[list], list)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} entry named {name}"))
}

/// The volume mount holding the state directory: mounted at it or at a parent directory (the chart
/// mounts the parent, so that certdock owns the state directory it creates and may chmod it 0700).
pub fn state_mount(container: &Value) -> &Value {
    arr(&container["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| Path::new(STATE_DIR).starts_with(str_of(&m["mountPath"], "mountPath")))
        .unwrap_or_else(|| panic!("no volume holds the state directory {STATE_DIR}: {container}"))
}

/// Traefik's TLSOption CRD: the `spec` schema (fields and the clientAuthType enum).
pub fn tlsoption_crd_spec() -> Value {
    let path = repo().join("../shared/testdata/traefik/traefik.io_tlsoptions.yaml");
    let yaml = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the Traefik CRD {}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("CRD is YAML");
    let crd = docs
        .iter()
        .find(|d| {
            d["kind"] == "CustomResourceDefinition" && d["spec"]["names"]["kind"] == "TLSOption"
        })
        .expect("the file holds the TLSOption CRD");
    let version = arr(&crd["spec"]["versions"], "versions")
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .expect("TLSOption CRD serves v1alpha1");
    version["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

pub fn client_auth_types(crd_spec: &Value) -> Vec<String> {
    let types: Vec<String> = arr(
        &crd_spec["properties"]["clientAuth"]["properties"]["clientAuthType"]["enum"],
        "clientAuthType enum",
    )
    .iter()
    .map(|v| str_of(v, "enum value").to_string())
    .collect();
    assert!(!types.is_empty(), "the CRD's clientAuthType enum is empty");
    types
}

/// Every field of a rendered TLSOption spec exists in the CRD (typos would be silently dropped).
pub fn assert_fields_in_crd(spec: &Value, schema: &Value, at: &str) {
    let Some(fields) = spec.as_object() else {
        return;
    };
    for (key, value) in fields {
        let sub = &schema["properties"][key];
        assert!(
            !sub.is_null(),
            "TLSOption field {at}.{key} is not in Traefik's CRD"
        );
        assert_fields_in_crd(value, sub, &format!("{at}.{key}"));
    }
}

pub fn pem_file(dir: &Path) -> PathBuf {
    let path = dir.join("roots.pem");
    fs::write(&path, TEST_ROOTS_PEM).expect("write test PEM");
    path
}
