//! Docker adapter errors: one variant per failed step, each saying whether a retry can help.

use bollard::errors::Error as BollardError;

/// A failed step of the Docker adapter. The source error is kept; [`DockerError::is_transient`]
/// tells a caller whether retrying later can help (daemon gone, 5xx, timeout) or not (bad input,
/// no such container, refused by the engine).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// `DOCKER_HOST` names a transport this build cannot speak.
    #[error("DOCKER_HOST {host:?} is not supported: {reason}")]
    UnsupportedHost { host: String, reason: &'static str },
    #[error("cannot create a Docker client for {host}")]
    Client {
        host: String,
        #[source]
        source: BollardError,
    },
    #[error("cannot negotiate the Docker API version")]
    NegotiateVersion {
        #[source]
        source: BollardError,
    },
    #[error("cannot read the Docker daemon's clock")]
    ServerTime {
        #[source]
        source: BollardError,
    },
    #[error("cannot list containers")]
    ListContainers {
        #[source]
        source: BollardError,
    },
    #[error("cannot inspect container {id}")]
    InspectContainer {
        id: String,
        #[source]
        source: BollardError,
    },
    #[error("the Docker event stream failed")]
    EventStream {
        #[source]
        source: BollardError,
    },
    /// The daemon closed the event stream: it restarted, or a proxy in between went away.
    #[error("the Docker event stream ended")]
    EventStreamEnded,
    #[error("cannot stat {path} in container {id}")]
    StatPath {
        id: String,
        path: String,
        #[source]
        source: BollardError,
    },
    /// The caller asked for an upload that cannot be expressed safely (bad directory or file name).
    #[error("invalid upload: {reason}")]
    InvalidUpload { reason: String },
    #[error("cannot build the archive for container {id}")]
    BuildArchive {
        id: String,
        #[source]
        source: std::io::Error,
    },
    /// Docker's archive API writes beneath a tmpfs, out of the container's sight, and files
    /// on a tmpfs would be gone at the next restart: refused rather than "delivered" unseen.
    #[error(
        "cannot deliver into {dir} in container {id}: it is on the tmpfs mounted at {mount}, \
         where copied files stay out of the container's sight (Docker writes beneath the tmpfs); \
         choose a directory outside it, or volume delivery"
    )]
    OnTmpfs {
        id: String,
        dir: String,
        mount: String,
    },
    #[error("cannot copy files into container {id}")]
    UploadFiles {
        id: String,
        #[source]
        source: BollardError,
    },
    #[error("cannot connect container {id} to network {network}")]
    ConnectNetwork {
        network: String,
        id: String,
        #[source]
        source: BollardError,
    },
    /// SIGKILL (or an empty signal) is never sent: a reload must not kill the workload.
    #[error("refusing to send signal {signal:?}: only a graceful reload signal may be sent")]
    RefusedSignal { signal: String },
    #[error("cannot send {signal} to container {id}")]
    SendSignal {
        id: String,
        signal: String,
        #[source]
        source: BollardError,
    },
    #[error("cannot restart container {id}")]
    Restart {
        id: String,
        #[source]
        source: BollardError,
    },
}

// === impl DockerError ===

impl DockerError {
    /// Whether the same call may succeed later without anyone changing anything: the daemon was
    /// unreachable, answered 5xx or timed out. Bad input, 4xx answers (no such container, already
    /// stopped, refused) are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::EventStreamEnded => true,
            Self::UnsupportedHost { .. }
            | Self::InvalidUpload { .. }
            | Self::OnTmpfs { .. }
            | Self::RefusedSignal { .. } => false,
            Self::BuildArchive { .. } => false,
            _ => self.bollard().is_some_and(bollard_is_transient),
        }
    }

    /// The HTTP status the engine answered with, when it answered at all.
    pub fn status_code(&self) -> Option<u16> {
        match self.bollard()? {
            BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
            _ => None,
        }
    }

    /// A delivery the container's own setup stops (its directory is on a tmpfs, or is no
    /// directory certdock may write): nothing changes until the container or its labels do, so
    /// the error itself is worth showing where a user looks (`status`), not only in the log.
    pub fn is_the_containers_setup(&self) -> bool {
        matches!(self, Self::OnTmpfs { .. } | Self::InvalidUpload { .. })
    }

    /// The engine said the container (or path, or network) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }

    fn bollard(&self) -> Option<&BollardError> {
        match self {
            Self::Client { source, .. }
            | Self::NegotiateVersion { source }
            | Self::ServerTime { source }
            | Self::ListContainers { source }
            | Self::InspectContainer { source, .. }
            | Self::EventStream { source }
            | Self::StatPath { source, .. }
            | Self::UploadFiles { source, .. }
            | Self::ConnectNetwork { source, .. }
            | Self::SendSignal { source, .. }
            | Self::Restart { source, .. } => Some(source),
            Self::UnsupportedHost { .. }
            | Self::EventStreamEnded
            | Self::InvalidUpload { .. }
            | Self::OnTmpfs { .. }
            | Self::BuildArchive { .. }
            | Self::RefusedSignal { .. } => None,
        }
    }
}

/// An error and its sources on one line (`a: b: c`), for logs.
pub(crate) fn report(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Transport failures and server-side errors are worth retrying; client errors are not.
pub(crate) fn bollard_is_transient(err: &BollardError) -> bool {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => {
            *status_code >= 500 || *status_code == 429
        }
        BollardError::RequestTimeoutError
        | BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::SocketNotFoundError(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: "x".into(),
        }
    }

    #[test]
    fn server_errors_and_timeouts_are_transient() {
        let err = DockerError::ListContainers {
            source: server(500),
        };
        assert!(err.is_transient());
        let err = DockerError::InspectContainer {
            id: "a".into(),
            source: BollardError::RequestTimeoutError,
        };
        assert!(err.is_transient());
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no socket");
        let err = DockerError::NegotiateVersion { source: io.into() };
        assert!(err.is_transient());
        assert!(DockerError::EventStreamEnded.is_transient());
    }

    #[test]
    fn missing_containers_and_bad_requests_are_permanent() {
        let err = DockerError::InspectContainer {
            id: "a".into(),
            source: server(404),
        };
        assert!(!err.is_transient());
        assert!(err.is_not_found());
        let err = DockerError::SendSignal {
            id: "a".into(),
            signal: "SIGHUP".into(),
            source: server(409),
        };
        assert!(!err.is_transient());
        assert_eq!(err.status_code(), Some(409));
        let err = DockerError::RefusedSignal {
            signal: "SIGKILL".into(),
        };
        assert!(!err.is_transient());
        assert_eq!(err.status_code(), None);
    }
}
