//! The Compose files under `compose/`: valid per the Compose specification, accepted by the local
//! Compose, and the Traefik example's certdock and client services actually run on the local
//! engine (with the locally built scratch image; Traefik and the demo need registry images).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::image::{docker_cli, scratch_image};
use common::process::eventually;
use common::{TEST_IMAGE, TEST_LABEL, TestNetwork, docker};

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compose")
}

/// Every `*.yaml`/`*.yml` under `compose/`, sorted.
fn compose_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read compose/") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&compose_dir(), &mut files);
    files.sort();
    files
}

/// `docker compose` (v2 plugin) when present, else `docker-compose` (v1).
fn compose_cmd() -> Command {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    }
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{what}: not installed ({e}); scripts/test.sh installs it")
        }
        Err(e) => panic!("{what}: {e}"),
    };
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn compose_has_the_traefik_and_multi_host_examples() {
    let names: Vec<String> = compose_files()
        .iter()
        .map(|p| p.strip_prefix(compose_dir()).unwrap().display().to_string())
        .collect();
    for expected in [
        "multi-host/agent.compose.yaml",
        "multi-host/compose.yaml",
        "multi-host/swarm-stack.yaml",
        "traefik/compose.yaml",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} in {names:?}"
        );
    }
}

#[test]
fn every_compose_file_validates_against_the_compose_spec() {
    let mut cmd = Command::new("check-jsonschema");
    cmd.args(["--builtin-schema", "vendor.compose-spec"])
        .args(compose_files());
    run(cmd, "check-jsonschema (pip install check-jsonschema)");
}

#[test]
fn every_compose_file_is_accepted_by_the_local_compose() {
    for file in compose_files() {
        let mut cmd = compose_cmd();
        cmd.arg("-f")
            .arg(&file)
            .args(["config", "--quiet"])
            // The multi-host files require it (`${CERTDOCK_CA_FINGERPRINT:?…}`).
            .env("CERTDOCK_CA_FINGERPRINT", "00".repeat(32));
        run(cmd, &format!("compose config {}", file.display()));
    }
}

/// The labels of one service of the Traefik example, as written (`key=value`).
fn example_labels(service: &str) -> Vec<String> {
    let text = std::fs::read_to_string(compose_dir().join("traefik/compose.yaml")).expect("read");
    let yaml: serde_json::Value = serde_saphyr::from_str(&text).expect("compose.yaml is YAML");
    yaml["services"][service]["labels"]
        .as_array()
        .unwrap_or_else(|| panic!("{service} has a list of labels"))
        .iter()
        .map(|l| l.as_str().expect("a label string").to_owned())
        .collect()
}

/// A Compose project brought up by a test: `down -v --remove-orphans` on drop, even on panic.
struct Project {
    name: String,
    files: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Project {
    fn cmd(&self) -> Command {
        let mut c = compose_cmd();
        c.arg("-p").arg(&self.name);
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        c
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self
                .cmd()
                .args(["logs", "--no-color", "--tail", "100"])
                .status();
        }
        let _ = self
            .cmd()
            .args(["down", "--volumes", "--remove-orphans", "--timeout", "2"])
            .output();
    }
}

#[tokio::test]
async fn the_traefik_example_runs_certdock_and_serves_its_client_on_the_local_engine() {
    let image = scratch_image();
    let d = docker().await;
    // The example's external `proxy` network, under a unique name.
    let net = TestNetwork::create(&d).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let label = format!("{}={}", TEST_LABEL.0, TEST_LABEL.1);
    // Other tests run certdock on the same engine: this project's certdock reads its own label
    // prefix, and the client carries the example's `certdock.*` labels under that prefix (and
    // `certdock.enable=false`, so no other certdock serves it).
    let prefix = common::unique_label_prefix();
    let client_labels: String = example_labels("client")
        .iter()
        .filter_map(|l| l.strip_prefix("certdock."))
        .map(|rest| format!("      - {prefix}.{rest}\n"))
        .collect();
    assert!(client_labels.contains(".usage=client"), "{client_labels}");
    // Only what needs a registry changes: certdock's image (the local scratch build), the
    // client's image (the local busybox, sleeping instead of calling Traefik), the network name.
    let override_yaml = format!(
        "services:\n\
         \x20 certdock:\n\
         \x20   image: {image}\n\
         \x20   environment:\n\
         \x20     CERTDOCK_PROXY_NETWORK: {net}\n\
         \x20     CERTDOCK_LABEL_PREFIX: {prefix}\n\
         \x20   labels:\n\
         \x20     - {label}\n\
         \x20 client:\n\
         \x20   image: {TEST_IMAGE}\n\
         \x20   entrypoint: [\"sh\", \"-c\"]\n\
         \x20   command: [\"trap 'exit 0' TERM; while true; do sleep 1 & wait $$!; done\"]\n\
         \x20   labels:\n\
         \x20     - {label}\n\
         \x20     - certdock.enable=false\n\
         {client_labels}\
         networks:\n\
         \x20 proxy:\n\
         \x20   name: {net}\n",
        net = net.name,
    );
    let override_file = dir.path().join("override.yaml");
    std::fs::write(&override_file, override_yaml).expect("write override");
    let project = Project {
        name: format!("certdock-test-{:08x}", rand::random::<u32>()),
        files: vec![compose_dir().join("traefik/compose.yaml"), override_file],
        _dir: dir,
    };
    let mut up = project.cmd();
    up.args(["up", "--detach", "--no-build", "certdock", "client"]);
    run(up, "compose up certdock client");

    let mut ps = project.cmd();
    ps.args(["ps", "-q", "client"]);
    let client = run(ps, "compose ps client").trim().to_owned();
    assert!(!client.is_empty(), "the client container exists");
    let enable = docker_cli(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"certdock.enable\"}}",
        &client,
    ]);
    assert_eq!(enable, "false", "the override's label wins");
    let cert = eventually(
        "the client's certificate from certdock in Compose",
        Duration::from_secs(30),
        || async {
            let (code, text) = common::exec(&d, &client, &["cat", "/run/certdock/cert.pem"]).await;
            (code == 0 && text.contains("BEGIN CERTIFICATE")).then_some(text)
        },
    )
    .await;
    assert!(cert.contains("BEGIN CERTIFICATE"));
    let (_, owner) = common::exec(
        &d,
        &client,
        &["stat", "-L", "-c", "%u:%g", "/run/certdock/key.pem"],
    )
    .await;
    assert_eq!(owner.trim(), "100:101", "certdock.owner from the example");

    // Traefik would mount the output volume at /certdock: certdock.yml names paths there.
    let volume = format!("{}_certdock-out", project.name);
    let yml = eventually(
        "traefik/certdock.yml in the output volume",
        Duration::from_secs(20),
        || async {
            let out = Command::new("docker")
                .args(["run", "--rm", "--label", &label, "-v"])
                .arg(format!("{volume}:/certdock:ro"))
                .args([TEST_IMAGE, "cat", "/certdock/traefik/certdock.yml"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    )
    .await;
    for path in ["/certdock/ca.pem", "/certdock/traefik-client/fullchain.pem"] {
        assert!(yml.contains(path), "{path} in certdock.yml:\n{yml}");
    }
    let mut ps = project.cmd();
    ps.args(["ps", "-q", "certdock"]);
    let certdock = run(ps, "compose ps certdock").trim().to_owned();
    let running = docker_cli(&["inspect", "--format", "{{.State.Running}}", &certdock]);
    assert_eq!(running, "true");
}

#[test]
fn the_walk_through_quotes_the_traefik_example_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/beside-traefik.md")).expect("the doc");
    let compose =
        std::fs::read_to_string(compose_dir().join("traefik/compose.yaml")).expect("compose");
    let lines: Vec<&str> = compose.lines().collect();
    let mut blocks = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        blocks += 1;
        // Each excerpt's lines appear in the file, in the same order, with the same indentation.
        let mut at = 0;
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            match lines[at..].iter().position(|l| *l == line) {
                Some(i) => at += i + 1,
                None => panic!(
                    "docs/beside-traefik.md quotes a line compose.yaml lacks (or out of order):\n{line}\n--- in ---\n{block}"
                ),
            }
        }
    }
    assert!(
        blocks >= 5,
        "the walk-through quotes the compose file ({blocks} excerpts)"
    );
}
