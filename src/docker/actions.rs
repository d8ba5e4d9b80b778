//! The Docker-actions seam: what the controller does to containers, and the bollard implementation.

use std::future::Future;

use tokio::sync::Mutex;

use super::upload::UploadFile;
use super::{Docker, DockerError, in_root, ops, upload};

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
    /// Copies files into the container with an atomic swap: through a running container's root
    /// ([`in_root`]) or the archive API ([`upload::upload_files`]). A directory on a tmpfs is
    /// refused ([`DockerError::OnTmpfs`]).
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
    /// Whether a running container's files may be written through its root on this host
    /// ([`in_root`]); the archive API otherwise, and wherever that path declines.
    through_root: bool,
}

// === impl BollardActions ===

impl<F, Fut> BollardActions<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Docker, DockerError>> + Send,
{
    /// `connect` is e.g. [`super::connect`]; it is called again after every transport failure.
    /// Deliveries into running containers go through their root when the engine turns out to
    /// be on this host (see [`in_root`]); [`Self::archive_only`] turns that off.
    pub fn new(connect: F) -> Self {
        Self {
            connect,
            docker: Mutex::new(None),
            through_root: true,
        }
    }

    /// Every delivery through the archive API (an engine on another host: its process ids mean
    /// nothing here, so asking for them would only cost an inspect per delivery).
    #[must_use]
    pub fn archive_only(mut self) -> Self {
        self.through_root = false;
        self
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
            let target = ops::upload_target(&d, u.container_id).await?;
            if let Some(mount) = target.as_ref().and_then(|t| t.tmpfs_holding(u.dir)) {
                return Err(DockerError::OnTmpfs {
                    id: u.container_id.to_owned(),
                    dir: u.dir.to_owned(),
                    mount: mount.to_owned(),
                });
            }
            let pid = target.and_then(|t| t.pid);
            if let Some(pid) = pid.filter(|_| self.through_root)
                && write_through_root(pid, &u).await
            {
                return Ok(());
            }
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

/// Writes the files through the root of the container's running process `pid`
/// ([`in_root::write`]); `false` when that path declined (logged), so the archive API follows.
/// The caller's inspect waited, in the daemon, for a `start` in progress: the files land as soon
/// as the process runs instead of one archive extraction later.
async fn write_through_root(pid: u32, u: &Upload<'_>) -> bool {
    let owned = OwnedUpload::from(u);
    let outcome = tokio::task::spawn_blocking(move || in_root::write(pid, &owned.as_upload()))
        .await
        .unwrap_or_else(|e| Err(in_root::Declined(format!("the writer failed: {e}"))));
    match outcome {
        Ok(()) => true,
        Err(declined) => {
            tracing::debug!(
                container = %u.container_id,
                reason = %declined,
                "not through the container's root; uploading an archive"
            );
            false
        }
    }
}

/// An [`Upload`] that can move to a blocking thread.
struct OwnedUpload {
    container_id: String,
    dir: String,
    files: Vec<UploadFile>,
    uid: u32,
    gid: u32,
    version: String,
    first: bool,
}

impl From<&Upload<'_>> for OwnedUpload {
    fn from(u: &Upload<'_>) -> Self {
        Self {
            container_id: u.container_id.to_owned(),
            dir: u.dir.to_owned(),
            files: u.files.to_vec(),
            uid: u.uid,
            gid: u.gid,
            version: u.version.to_owned(),
            first: u.first,
        }
    }
}

impl OwnedUpload {
    fn as_upload(&self) -> Upload<'_> {
        Upload {
            container_id: &self.container_id,
            dir: &self.dir,
            files: &self.files,
            uid: self.uid,
            gid: self.gid,
            version: &self.version,
            first: self.first,
        }
    }
}
