//! Connecting to the Docker Engine as Docker's own tools do: `DOCKER_HOST`, then version negotiation.

use std::path::PathBuf;

use bollard::{API_DEFAULT_VERSION, Docker};

use super::DockerError;

/// Where Docker's own CLI looks when `DOCKER_HOST` is unset.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Per-request timeout for everything except the event stream, whose body may stay open forever
/// (bollard applies the timeout to the response headers only). Long enough for a restart that
/// waits out the container's stop timeout.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// The port Docker's CLI assumes for `tcp://host` without TLS.
const DEFAULT_TCP_PORT: u16 = 2375;

/// A parsed `DOCKER_HOST` value, restricted to what this build can speak (no TLS, no SSH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// `unix:///path/to/docker.sock`
    Unix(PathBuf),
    /// `tcp://host:port` or `http://host:port`, plain HTTP (e.g. a socket proxy on a private network).
    Tcp(String),
}

// === impl DockerHost ===

impl DockerHost {
    /// Parses a `DOCKER_HOST` value. `tls_verify` is `DOCKER_TLS_VERIFY`: Docker's CLI would speak TLS
    /// to a `tcp://` host then, which this build cannot, so it is refused rather than silently
    /// downgraded to plain HTTP.
    pub fn parse(host: &str, tls_verify: Option<&str>) -> Result<Self, DockerError> {
        let unsupported = |reason| DockerError::UnsupportedHost {
            host: host.to_owned(),
            reason,
        };
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() || !path.starts_with('/') {
                return Err(unsupported("a unix socket path must be absolute"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let rest = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"));
        if let Some(rest) = rest {
            // Docker's CLI treats DOCKER_TLS_VERIFY as set when it is non-empty.
            if tls_verify.is_some_and(|v| !v.is_empty()) {
                return Err(unsupported(
                    "DOCKER_TLS_VERIFY is set but TLS to the daemon is not supported; \
                     use the unix socket or a socket proxy",
                ));
            }
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(unsupported("expected tcp://HOST[:PORT]"));
            }
            return Ok(Self::Tcp(with_default_port(authority)));
        }
        let reason = if host.starts_with("ssh://") || host.starts_with("https://") {
            "ssh:// and https:// transports are not supported; use unix:// or tcp:// (plain HTTP)"
        } else {
            "expected unix:///path or tcp://host:port"
        };
        Err(unsupported(reason))
    }

    /// Reads `DOCKER_HOST` and `DOCKER_TLS_VERIFY`; an unset or empty `DOCKER_HOST` means the
    /// default socket, as for the Docker CLI.
    pub fn from_env() -> Result<Self, DockerError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
        let tls_verify = std::env::var("DOCKER_TLS_VERIFY").ok();
        Self::parse(&host, tls_verify.as_deref())
    }
}

impl std::fmt::Display for DockerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// Appends Docker's default port when `authority` has none (`[v6]` literals included).
fn with_default_port(authority: &str) -> String {
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{DEFAULT_TCP_PORT}")
    }
}

/// Connects to the engine named by `DOCKER_HOST` (default `/var/run/docker.sock`) and negotiates
/// the API version, so that one binary works with engine 20.10 (API 1.41) and newer ones.
///
/// # Errors
/// [`DockerError::UnsupportedHost`] for a transport this build cannot speak (permanent), and
/// [`DockerError::NegotiateVersion`] when the daemon cannot be reached (transient).
pub async fn connect() -> Result<Docker, DockerError> {
    connect_to(&DockerHost::from_env()?).await
}

/// Like [`connect`], for an explicit host (tests point it at a socket proxy this way, without
/// touching the process environment).
pub async fn connect_to(host: &DockerHost) -> Result<Docker, DockerError> {
    let client = match host {
        DockerHost::Unix(path) => {
            // No existence check here: a missing socket is a transient failure of the first request.
            let path = path.to_string_lossy();
            Docker::connect_with_unix(&path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
        DockerHost::Tcp(addr) => {
            Docker::connect_with_http(addr, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
    }
    .map_err(|source| DockerError::Client {
        host: host.to_string(),
        source,
    })?;
    // Downgrades to the daemon's version when it is older than bollard's (1.53); a newer daemon
    // keeps serving older API versions, so nothing changes then.
    client
        .negotiate_version()
        .await
        .map_err(|source| DockerError::NegotiateVersion { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_hosts_keep_their_absolute_path() {
        let host = DockerHost::parse("unix:///tmp/proxy.sock", None).unwrap();
        assert_eq!(host, DockerHost::Unix("/tmp/proxy.sock".into()));
        assert_eq!(host.to_string(), "unix:///tmp/proxy.sock");
        assert!(DockerHost::parse("unix://relative.sock", None).is_err());
    }

    #[test]
    fn tcp_hosts_get_dockers_default_port() {
        let parse = |h| DockerHost::parse(h, None).unwrap();
        assert_eq!(parse("tcp://proxy"), DockerHost::Tcp("proxy:2375".into()));
        assert_eq!(
            parse("tcp://proxy:2376/"),
            DockerHost::Tcp("proxy:2376".into())
        );
        assert_eq!(
            parse("http://10.0.0.1:80"),
            DockerHost::Tcp("10.0.0.1:80".into())
        );
        assert_eq!(parse("tcp://[::1]"), DockerHost::Tcp("[::1]:2375".into()));
        assert_eq!(parse("tcp://[::1]:9"), DockerHost::Tcp("[::1]:9".into()));
    }

    #[test]
    fn tls_and_ssh_hosts_are_refused_not_downgraded() {
        for (host, tls) in [
            ("tcp://proxy:2376", Some("1")),
            ("https://proxy:2376", None),
            ("ssh://me@host", None),
            ("npipe:////./pipe/docker_engine", None),
            ("tcp://", None),
            ("tcp://host/path", None),
        ] {
            let err = DockerHost::parse(host, tls).unwrap_err();
            assert!(!err.is_transient(), "{host}");
            assert!(matches!(err, DockerError::UnsupportedHost { .. }), "{host}");
        }
        // An empty DOCKER_TLS_VERIFY is "unset" for the Docker CLI too.
        assert!(DockerHost::parse("tcp://proxy", Some("")).is_ok());
    }
}
