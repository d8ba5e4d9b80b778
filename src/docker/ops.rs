//! Small container actions the controller takes: inspect, attach to a network, signal, restart.

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, EndpointSettings, NetworkConnectRequest};
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptions, RestartContainerOptions,
};

use super::DockerError;
use super::convert;
use crate::core::container::ContainerInfo;

/// Seconds a restart waits for the container to stop before Docker kills it (Docker's default).
const RESTART_STOP_TIMEOUT_SECS: i32 = 10;

/// The container as it is now, or `None` when it no longer exists.
pub async fn inspect(docker: &Docker, id: &str) -> Result<Option<ContainerInfo>, DockerError> {
    Ok(inspect_response(docker, id)
        .await?
        .and_then(|response| convert::from_inspect(&response)))
}

/// What a delivery needs to know of a container first: its main process while it runs, and
/// where tmpfs mounts lie in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadTarget {
    /// The host process id of the main process; `None` unless it runs.
    pub pid: Option<u32>,
    /// Mount points of its tmpfs mounts (`--tmpfs` and `--mount type=tmpfs`).
    pub tmpfs: Vec<String>,
}

impl UploadTarget {
    /// The tmpfs mount that holds `dir` (absolute), if any.
    pub fn tmpfs_holding(&self, dir: &str) -> Option<&str> {
        let dir = dir.trim_end_matches('/');
        self.tmpfs.iter().map(String::as_str).find(|mount| {
            let mount = mount.trim_end_matches('/');
            dir == mount
                || dir
                    .strip_prefix(mount)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// [`UploadTarget`] of the container; `None` when it is gone (the caller's next call reports
/// a missing container). The inspect waits, in the daemon, for a `start` in progress.
pub async fn upload_target(docker: &Docker, id: &str) -> Result<Option<UploadTarget>, DockerError> {
    let Some(response) = inspect_response(docker, id).await? else {
        return Ok(None);
    };
    let state = response.state.unwrap_or_default();
    let pid = state.pid.and_then(|p| u32::try_from(p).ok());
    let mut tmpfs: Vec<String> = response
        .host_config
        .and_then(|h| h.tmpfs)
        .map(|t| t.into_keys().collect())
        .unwrap_or_default();
    let mounts = response.mounts.unwrap_or_default().into_iter();
    tmpfs.extend(
        mounts
            .filter(|m| m.typ.as_deref() == Some("tmpfs"))
            .filter_map(|m| m.destination),
    );
    Ok(Some(UploadTarget {
        pid: pid.filter(|p| state.running == Some(true) && *p > 0),
        tmpfs,
    }))
}

/// Docker's inspect answer, or `None` for a container that does not exist.
async fn inspect_response(
    docker: &Docker,
    id: &str,
) -> Result<Option<ContainerInspectResponse>, DockerError> {
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(response) => Ok(Some(response)),
        Err(source) => {
            let err = DockerError::InspectContainer {
                id: id.to_owned(),
                source,
            };
            if err.is_not_found() {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// Attaches the container to `network` with the given DNS aliases. Idempotent: a container that
/// is already attached is left as it is (its aliases are not changed) and this returns `Ok`.
pub async fn connect_network(
    docker: &Docker,
    network: &str,
    container_id: &str,
    aliases: &[String],
) -> Result<(), DockerError> {
    let request = NetworkConnectRequest {
        container: container_id.to_owned(),
        endpoint_config: Some(EndpointSettings {
            aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
            ..Default::default()
        }),
    };
    let Err(source) = docker.connect_network(network, request).await else {
        return Ok(());
    };
    let err = DockerError::ConnectNetwork {
        network: network.to_owned(),
        id: container_id.to_owned(),
        source,
    };
    // "Already attached" is worded and coded differently across engine versions (403 "endpoint
    // with name … already exists" on 20.10, other codes and texts later), so ask the container
    // instead of parsing the message.
    if err.status_code().is_some() && is_attached(docker, network, container_id).await {
        return Ok(());
    }
    Err(err)
}

/// Whether the container is attached to `network`, given by name or id.
async fn is_attached(docker: &Docker, network: &str, container_id: &str) -> bool {
    let Ok(inspect) = docker
        .inspect_container(container_id, None::<InspectContainerOptions>)
        .await
    else {
        return false;
    };
    let networks = inspect.network_settings.and_then(|n| n.networks);
    networks.is_some_and(|networks| {
        networks.iter().any(|(name, endpoint)| {
            name == network || endpoint.network_id.as_deref() == Some(network)
        })
    })
}

/// Sends `signal` (e.g. `SIGHUP`, `HUP`, `1`) to the container's main process.
///
/// # Errors
/// [`DockerError::RefusedSignal`] for SIGKILL in any spelling or an empty signal: bollard's kill
/// defaults to SIGKILL, and a reload must never kill the workload. A stopped container answers
/// 409 ([`DockerError::status_code`]), which is permanent.
pub async fn send_signal(
    docker: &Docker,
    container_id: &str,
    signal: &str,
) -> Result<(), DockerError> {
    if is_refused_signal(signal) {
        return Err(DockerError::RefusedSignal {
            signal: signal.to_owned(),
        });
    }
    // Always explicit: KillContainerOptions::default() would be SIGKILL.
    let options = KillContainerOptions {
        signal: signal.trim().to_owned(),
    };
    docker
        .kill_container(container_id, Some(options))
        .await
        .map_err(|source| DockerError::SendSignal {
            id: container_id.to_owned(),
            signal: signal.to_owned(),
            source,
        })
}

/// Empty, or SIGKILL spelt any way Docker accepts (`SIGKILL`, `kill`, `9`).
fn is_refused_signal(signal: &str) -> bool {
    let upper = signal.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    name.is_empty() || name == "KILL" || name.trim_start_matches('0') == "9"
}

/// Restarts the container: Docker stops it (stop signal, then SIGKILL after 10 s) and starts it.
pub async fn restart(docker: &Docker, container_id: &str) -> Result<(), DockerError> {
    let options = RestartContainerOptions {
        signal: None,
        t: Some(RESTART_STOP_TIMEOUT_SECS),
    };
    docker
        .restart_container(container_id, Some(options))
        .await
        .map_err(|source| DockerError::Restart {
            id: container_id.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_held_by_a_tmpfs_at_it_or_above_it_only() {
        let target = UploadTarget {
            pid: None,
            tmpfs: vec!["/run".into(), "/srv/tmp/".into()],
        };
        for dir in ["/run", "/run/", "/run/certdock", "/srv/tmp/x/y"] {
            assert!(target.tmpfs_holding(dir).is_some(), "{dir}");
        }
        for dir in [
            "/runner/certdock",
            "/",
            "/srv",
            "/srv/tmpx",
            "/etc/certdock",
        ] {
            assert_eq!(target.tmpfs_holding(dir), None, "{dir}");
        }
    }

    #[test]
    fn sigkill_is_refused_in_every_spelling() {
        for signal in [
            "SIGKILL",
            "sigkill",
            "KILL",
            "kill",
            "9",
            "09",
            " SIGKILL ",
            "",
            "SIG",
        ] {
            assert!(is_refused_signal(signal), "{signal:?}");
        }
    }

    #[test]
    fn reload_signals_are_allowed() {
        for signal in ["SIGHUP", "HUP", "1", "SIGUSR1", "SIGTERM", "19"] {
            assert!(!is_refused_signal(signal), "{signal:?}");
        }
    }
}
