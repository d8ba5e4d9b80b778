//! A unix-socket forwarder to the Docker socket that a test can cut and restore, to kill the event stream.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Every forwarding task and its stall switch; a std Mutex is enough, nothing awaits while
    /// holding it.
    connections: Arc<Mutex<Vec<Connection>>>,
    accepted: Arc<AtomicUsize>,
}

/// A forwarding task and the switch that freezes it.
type Connection = (AbortHandle, Arc<AtomicBool>);

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
        for (connection, _) in lock(&self.connections).drain(..) {
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
                let stalled = Arc::new(AtomicBool::new(false));
                let forward = tokio::spawn(forward(client, upstream, Arc::clone(&stalled)));
                let mut live = lock(&connections);
                live.retain(|(c, _)| !c.is_finished());
                live.push((forward.abort_handle(), stalled));
            }
        });
        *acceptor = Some(task.abort_handle());
        Ok(())
    }
}

impl SockProxy {
    /// Freezes every connection open now (the event stream among them): they stay open but
    /// no more bytes reach the client, as with a daemon that silently stops sending. New
    /// connections work normally.
    pub fn stall_open_connections(&self) {
        for (_, stalled) in lock(&self.connections).iter() {
            stalled.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for SockProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn forward(client: UnixStream, upstream: PathBuf, stalled: Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = UnixStream::connect(&upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::io::copy(&mut client_read, &mut server_write);
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            while stalled.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // The connection lives as long as responses flow: a client that is done sending (or
    // half-closes) still gets its answer.
    tokio::select! {
        _ = async { let _ = up.await; std::future::pending::<()>().await } => {},
        _ = down => {},
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not make cleanup panic too.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
