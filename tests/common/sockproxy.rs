//! A unix-socket forwarder to the Docker socket that a test can cut and restore, to kill the event stream.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{UnixListener, UnixStream};
use tokio::task::AbortHandle;

/// Forwards every connection on a temporary socket to the real Docker socket.
///
/// [`SockProxy::cut`] simulates the daemon going away: live connections are dropped and the socket
/// file disappears (new connections fail), as when dockerd restarts. [`SockProxy::restore`] binds
/// the socket again. Point certdock at [`SockProxy::host`] (`unix:///…`).
pub struct SockProxy {
    _dir: tempfile::TempDir,
    path: PathBuf,
    upstream: PathBuf,
    /// The accept loop, while the proxy is up.
    acceptor: Mutex<Option<AbortHandle>>,
    /// Every forwarding task; a std Mutex is enough, nothing awaits while holding it.
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accepted: Arc<AtomicUsize>,
}

impl SockProxy {
    /// A proxy to `upstream` (the Docker socket), listening at once.
    pub fn start(upstream: &Path) -> io::Result<Self> {
        let proxy = Self::new_cut(upstream)?;
        proxy.restore()?;
        Ok(proxy)
    }

    /// A proxy whose socket does not exist yet (as if Docker were absent); call [`Self::restore`].
    pub fn new_cut(upstream: &Path) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("certdock-proxy-")
            .tempdir()?;
        let path = dir.path().join("docker.sock");
        Ok(Self {
            _dir: dir,
            path,
            upstream: upstream.to_owned(),
            acceptor: Mutex::new(None),
            connections: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The `DOCKER_HOST` value for this proxy.
    pub fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Connections accepted so far (each reconnect of a client adds at least one).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Drops every live connection and removes the socket, so new connections fail.
    pub fn cut(&self) {
        if let Some(acceptor) = lock(&self.acceptor).take() {
            acceptor.abort();
        }
        for connection in lock(&self.connections).drain(..) {
            connection.abort();
        }
        // The listener closes when its task is aborted; the file must go too, or connecting
        // would hang on a socket nobody accepts on instead of failing at once.
        let _ = std::fs::remove_file(&self.path);
    }

    /// Listens again (no-op when already listening). Must run inside a tokio runtime.
    pub fn restore(&self) -> io::Result<()> {
        let mut acceptor = lock(&self.acceptor);
        if acceptor.is_some() {
            return Ok(());
        }
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path)?;
        let upstream = self.upstream.clone();
        let connections = Arc::clone(&self.connections);
        let accepted = Arc::clone(&self.accepted);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                let forward = tokio::spawn(forward(client, upstream));
                let mut live = lock(&connections);
                live.retain(|c| !c.is_finished());
                live.push(forward.abort_handle());
            }
        });
        *acceptor = Some(task.abort_handle());
        Ok(())
    }
}

impl Drop for SockProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn forward(mut client: UnixStream, upstream: PathBuf) {
    let Ok(mut server) = UnixStream::connect(&upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not make cleanup panic too.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
