//! Helpers for integration tests against the real Docker engine: test image, throwaway containers and networks.
//!
//! Every container and network is created with a unique name and the label `io.certdock.test=1` (outside the `certdock.` prefix, which the controller reads),
//! and removed on drop (also when the test panics). Nothing a test did not create is touched.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod acme_client;
pub mod controller;
pub mod image;
pub mod mtls_client;
pub mod peers;
pub mod process;
pub mod serve;
pub mod sockproxy;
pub mod ui;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use futures_util::StreamExt;

#[allow(unused_imports)] // not every test binary uses these
pub use serve::*;
#[allow(unused_imports)]
pub use sockproxy::SockProxy;

/// The image every test container runs; built locally by `tests/images/build.sh`.
pub const TEST_IMAGE: &str = "certdock-test/busybox:latest";
/// Marks everything tests create.
pub const TEST_LABEL: (&str, &str) = ("io.certdock.test", "1");
/// A process that stays up, answers SIGHUP by appending to /tmp/hup, and says when the trap is
/// set (/tmp/ready): a signal sent earlier would be lost, PID 1 ignores signals without handler.
/// `sleep & wait` lets the trap run at once instead of after the sleep; the TERM trap lets
/// stop and restart finish at once instead of after Docker's 10 s grace period.
pub const TRAP_HUP: &str = "trap 'echo HUP >> /tmp/hup' HUP; trap 'exit 0' TERM; \
     touch /tmp/ready; while true; do sleep 1 & wait $!; done";

/// Builds the test image once per test process (the script skips work when it is up to date).
pub fn ensure_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/images/build.sh");
        let status = std::process::Command::new(&script)
            .status()
            .expect("run tests/images/build.sh");
        assert!(status.success(), "tests/images/build.sh failed: {status}");
    });
}

/// A client for the engine named by `DOCKER_HOST` (the test image is built first).
pub async fn docker() -> Docker {
    ensure_image();
    certdock::docker::connect()
        .await
        .expect("connect to Docker")
}

/// The engine's unix socket (what a [`SockProxy`] forwards to).
pub fn docker_socket() -> PathBuf {
    match certdock::docker::DockerHost::from_env().expect("DOCKER_HOST") {
        certdock::docker::DockerHost::Unix(path) => path,
        other => panic!("the socket proxy needs a unix DOCKER_HOST, not {other}"),
    }
}

/// The label prefix of this test process (nextest runs every test in its own process): every
/// certdock a test starts watches the same Docker engine, and without a prefix of its own it would
/// serve the containers of tests running beside it.
pub fn label_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| format!("cdt-{:08x}", rand::random::<u32>()))
}

/// `certdock.X` as this process's certdock reads it.
pub fn own_label(key: &str) -> String {
    match key.strip_prefix("certdock.") {
        Some(rest) => format!("{}.{rest}", label_prefix()),
        None => key.to_owned(),
    }
}

/// `certdock-test-<pid>-<counter>-<random>`: unique across tests, processes and reruns.
pub fn unique_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let random: u32 = rand::random();
    format!("certdock-test-{}-{n}-{random:08x}", std::process::id())
}

/// A `--label-prefix` of its own (`cdtest-<random>`), for a certdock that must serve only this
/// test's containers. Every `certdock run` on the engine serves every container labelled with
/// its prefix, so with the default `certdock` prefix tests running in parallel would deliver
/// certificates from their own CAs into each other's containers.
pub fn unique_label_prefix() -> String {
    format!("cdtest-{:08x}", rand::random::<u32>())
}

/// What to create: labels (besides the test marker), command, user.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    labels: HashMap<String, String>,
    cmd: Vec<String>,
    user: Option<String>,
    tmpfs: Option<String>,
    volume: Option<String>,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        Self {
            labels: HashMap::from([(TEST_LABEL.0.to_owned(), TEST_LABEL.1.to_owned())]),
            cmd: vec!["sh".into(), "-c".into(), TRAP_HUP.into()],
            user: None,
            tmpfs: None,
            volume: None,
        }
    }
}

impl ContainerSpec {
    /// Adds a label. `certdock.*` keys are written with this test process's own prefix (see
    /// [`label_prefix`]), so that only the certdock this test started acts on the container.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(own_label(key), value.to_owned());
        self
    }

    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Mounts a tmpfs at `path` inside.
    pub fn tmpfs(mut self, path: &str) -> Self {
        self.tmpfs = Some(path.to_owned());
        self
    }

    /// Mounts an anonymous volume at `path` inside (removed with the container).
    pub fn volume(mut self, path: &str) -> Self {
        self.volume = Some(path.to_owned());
        self
    }

    /// Creates the container (not started).
    pub async fn create(self, docker: &Docker) -> TestContainer {
        ensure_image();
        let name = unique_name();
        let body = ContainerCreateBody {
            image: Some(TEST_IMAGE.to_owned()),
            cmd: Some(self.cmd),
            labels: Some(self.labels),
            user: self.user,
            host_config: self.tmpfs.map(|path| HostConfig {
                tmpfs: Some(HashMap::from([(path, String::new())])),
                ..Default::default()
            }),
            volumes: self.volume.map(|path| vec![path]),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let created = docker
            .create_container(Some(options), body)
            .await
            .expect("create test container");
        TestContainer {
            id: created.id,
            name,
        }
    }

    /// Creates and starts the container.
    pub async fn run(self, docker: &Docker) -> TestContainer {
        let container = self.create(docker).await;
        container.start(docker).await;
        container
    }
}

/// A container this test created; force-removed on drop.
#[derive(Debug)]
pub struct TestContainer {
    pub id: String,
    pub name: String,
}

impl TestContainer {
    pub async fn start(&self, docker: &Docker) {
        docker
            .start_container(&self.id, None::<StartContainerOptions>)
            .await
            .expect("start test container");
    }

    /// Removes it now (the drop then finds nothing to do).
    pub async fn remove(&self, docker: &Docker) {
        remove_container(docker, &self.id).await;
    }

    /// Runs `cmd` inside (the container must be running): exit code and stdout+stderr.
    pub async fn exec(&self, docker: &Docker, cmd: &[&str]) -> (i64, String) {
        exec(docker, &self.id, cmd).await
    }

    /// Waits until `path` exists inside, e.g. the trap's /tmp/ready.
    pub async fn wait_for_file(&self, docker: &Docker, path: &str) {
        for _ in 0..100 {
            if self.exec(docker, &["test", "-e", path]).await.0 == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} never appeared in {}", self.name);
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let id = self.id.clone();
        on_own_runtime(async move {
            if let Ok(docker) = certdock::docker::connect().await {
                remove_container(&docker, &id).await;
            }
        });
    }
}

async fn remove_container(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    // Already gone is fine: the test may have removed it itself.
    let _ = docker.remove_container(id, Some(options)).await;
}

/// A network this test created; removed on drop (after its containers, if declared first).
#[derive(Debug)]
pub struct TestNetwork {
    pub id: String,
    pub name: String,
}

impl TestNetwork {
    pub async fn create(docker: &Docker) -> Self {
        let name = unique_name();
        let request = NetworkCreateRequest {
            name: name.clone(),
            labels: Some(HashMap::from([(
                TEST_LABEL.0.to_owned(),
                TEST_LABEL.1.to_owned(),
            )])),
            ..Default::default()
        };
        let created = docker
            .create_network(request)
            .await
            .expect("create test network");
        Self {
            id: created.id,
            name,
        }
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let id = self.id.clone();
        on_own_runtime(async move {
            if let Ok(docker) = certdock::docker::connect().await {
                let _ = docker.remove_network(&id).await;
            }
        });
    }
}

/// Runs cleanup to completion from `Drop`, inside or outside a runtime, even while panicking.
fn on_own_runtime(cleanup: impl Future<Output = ()> + Send + 'static) {
    let thread = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(cleanup);
        }
    });
    let _ = thread.join();
}

/// Runs `cmd` in a running container: exit code and combined output.
pub async fn exec(docker: &Docker, id: &str, cmd: &[&str]) -> (i64, String) {
    let options = CreateExecOptions {
        cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker.create_exec(id, options).await.expect("create exec");
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.expect("start exec")
    {
        while let Some(chunk) = output.next().await {
            out.push_str(&chunk.expect("exec output").to_string());
        }
    }
    let inspect = docker.inspect_exec(&exec.id).await.expect("inspect exec");
    (inspect.exit_code.unwrap_or(-1), out)
}
