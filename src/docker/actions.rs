//! The Docker-actions seam: what the controller does to containers, and the bollard implementation.

use std::future::Future;

use tokio::sync::Mutex;

use super::upload::UploadFile;
use super::{Docker, DockerError, ops, upload};

/// One delivery into a container: the five files, their owner, and the version they carry.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub container_id: &'a str,
    /// Absolute directory inside the container.
    pub dir: &'a str,
    pub files: &'a [UploadFile],
    pub uid: u32,
    pub gid: u32,
    pub version: &'a str,
    /// No earlier delivery into this container is recorded: one archive call, without reading
    /// the directory first (see [`upload::upload_first`]).
    pub first: bool,
}

/// What the controller asks of a Docker engine. Two implementations: [`BollardActions`] (the
/// engine) and the controller's in-memory test engine.
pub trait DockerActions: Send + Sync + 'static {
    /// Copies files into the container with an atomic swap (see [`upload::upload_files`]).
    fn upload(&self, upload: Upload<'_>) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Sends a reload signal (never SIGKILL; see [`ops::send_signal`]).
    fn signal(
        &self,
        container_id: &str,
        signal: &str,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn restart(&self, container_id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Attaches to a network; already attached is success.
    fn connect_network(
        &self,
        network: &str,
        container_id: &str,
        aliases: &[String],
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
}

/// The engine named by `DOCKER_HOST`, through bollard. The client is made on first use and
/// dropped after a transport failure, so the next action reconnects (and renegotiates).
pub struct BollardActions<F> {
    connect: F,
    docker: Mutex<Option<Docker>>,
}

// === impl BollardActions ===

impl<F, Fut> BollardActions<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Docker, DockerError>> + Send,
{
    /// `connect` is e.g. [`super::connect`]; it is called again after every transport failure.
    pub fn new(connect: F) -> Self {
        Self {
            connect,
            docker: Mutex::new(None),
        }
    }

    async fn docker(&self) -> Result<Docker, DockerError> {
        let mut guard = self.docker.lock().await;
        if let Some(d) = guard.as_ref() {
            return Ok(d.clone());
        }
        let d = (self.connect)().await?;
        *guard = Some(d.clone());
        Ok(d)
    }

    /// Runs one action; a transient failure drops the client so the next action reconnects.
    async fn with<T, A>(&self, action: impl FnOnce(Docker) -> A) -> Result<T, DockerError>
    where
        A: Future<Output = Result<T, DockerError>>,
    {
        let result = action(self.docker().await?).await;
        if let Err(e) = &result
            && e.is_transient()
        {
            *self.docker.lock().await = None;
        }
        result
    }
}

impl<F, Fut> DockerActions for BollardActions<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Docker, DockerError>> + Send,
{
    async fn upload(&self, u: Upload<'_>) -> Result<(), DockerError> {
        self.with(|d| async move {
            if u.first {
                upload::upload_first(&d, &u).await
            } else {
                let (id, dir, files, version) = (u.container_id, u.dir, u.files, u.version);
                upload::upload_files(&d, id, dir, files, u.uid, u.gid, version).await
            }
        })
        .await
    }

    async fn signal(&self, container_id: &str, signal: &str) -> Result<(), DockerError> {
        self.with(|d| async move { ops::send_signal(&d, container_id, signal).await })
            .await
    }

    async fn restart(&self, container_id: &str) -> Result<(), DockerError> {
        self.with(|d| async move { ops::restart(&d, container_id).await })
            .await
    }

    async fn connect_network(
        &self,
        network: &str,
        container_id: &str,
        aliases: &[String],
    ) -> Result<(), DockerError> {
        self.with(|d| async move { ops::connect_network(&d, network, container_id, aliases).await })
            .await
    }
}
