//! Turning bollard's list, inspect and event models into the core's plain `ContainerInfo`.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, EndpointSettings,
};

use crate::core::container::{ContainerInfo, ContainerState};

/// Event attributes Docker adds next to a container's labels; they are not labels.
const NON_LABEL_ATTRIBUTES: [&str; 5] = ["name", "image", "exitCode", "signal", "oldName"];

/// The label whose presence opts a container in: `<prefix>.enable`.
pub(crate) fn enable_label(prefix: &str) -> String {
    format!("{prefix}.enable")
}

/// A listed container. `with_networks` is false for containers that did not opt in: their
/// networks are never tracked (events do not carry them), so they are always reported empty.
pub(crate) fn from_summary(
    summary: &ContainerSummary,
    with_networks: bool,
) -> Option<ContainerInfo> {
    let id = summary.id.clone().filter(|id| !id.is_empty())?;
    let state = match summary.state {
        Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
        _ => ContainerState::Stopped,
    };
    let networks = match &summary.network_settings {
        Some(settings) if with_networks => network_names(settings.networks.as_ref()),
        _ => Vec::new(),
    };
    Some(ContainerInfo {
        id,
        name: primary_name(summary.names.as_deref().unwrap_or_default()),
        labels: sorted(summary.labels.as_ref()),
        state,
        networks,
    })
}

/// An inspected container: the authoritative view, used for opted-in containers.
pub(crate) fn from_inspect(inspect: &ContainerInspectResponse) -> Option<ContainerInfo> {
    let id = inspect.id.clone().filter(|id| !id.is_empty())?;
    let status = inspect.state.as_ref().and_then(|s| s.status);
    let state = match status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        _ => ContainerState::Stopped,
    };
    let name = inspect.name.as_deref().unwrap_or_default();
    let networks = inspect
        .network_settings
        .as_ref()
        .map(|n| network_names(n.networks.as_ref()))
        .unwrap_or_default();
    Some(ContainerInfo {
        id,
        name: name.trim_start_matches('/').to_owned(),
        labels: sorted(inspect.config.as_ref().and_then(|c| c.labels.as_ref())),
        state,
        networks,
    })
}

/// A container event of a container that did not opt in, built from the event alone (no inspect):
/// the state follows from the action; other actions (rename, update) are not worth a record.
pub(crate) fn from_event(
    id: &str,
    action: &str,
    attributes: &HashMap<String, String>,
) -> Option<ContainerInfo> {
    let state = match action {
        "create" => ContainerState::Created,
        "start" | "unpause" => ContainerState::Running,
        "die" | "pause" => ContainerState::Stopped,
        _ => return None,
    };
    let labels = attributes
        .iter()
        .filter(|(k, _)| !NON_LABEL_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(ContainerInfo {
        id: id.to_owned(),
        name: attributes.get("name").cloned().unwrap_or_default(),
        labels,
        state,
        networks: Vec::new(),
    })
}

/// Docker lists legacy link aliases (`/other/alias`) beside the real name (`/name`).
fn primary_name(names: &[String]) -> String {
    let trimmed = |n: &String| n.trim_start_matches('/').to_owned();
    names
        .iter()
        .find(|n| !n.trim_start_matches('/').contains('/'))
        .or_else(|| names.first())
        .map(trimmed)
        .unwrap_or_default()
}

fn network_names(networks: Option<&HashMap<String, EndpointSettings>>) -> Vec<String> {
    let mut names: Vec<String> = networks
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    // HashMap order is random; a stable order keeps equal containers equal.
    names.sort();
    names
}

fn sorted(labels: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    labels
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerConfig, ContainerSummaryNetworkSettings};

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn listed_containers_use_their_real_name_not_link_aliases() {
        let summary = ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/web/db".into(), "/db".into()]),
            state: Some(ContainerSummaryStateEnum::EXITED),
            labels: Some(labels(&[("certdock.enable", "true")])),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(HashMap::from([
                    ("proxy".to_string(), EndpointSettings::default()),
                    ("bridge".to_string(), EndpointSettings::default()),
                ])),
            }),
            ..Default::default()
        };
        let info = from_summary(&summary, true).unwrap();
        assert_eq!(info.name, "db");
        assert_eq!(info.state, ContainerState::Stopped);
        assert_eq!(info.networks, ["bridge", "proxy"]);
        assert_eq!(info.labels["certdock.enable"], "true");
        assert!(from_summary(&summary, false).unwrap().networks.is_empty());
    }

    #[test]
    fn containers_without_an_id_are_skipped() {
        assert!(from_summary(&ContainerSummary::default(), true).is_none());
        assert!(from_inspect(&ContainerInspectResponse::default()).is_none());
    }

    #[test]
    fn inspected_created_containers_are_created() {
        let inspect = ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/app".into()),
            state: Some(bollard::models::ContainerState {
                status: Some(ContainerStateStatusEnum::CREATED),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                labels: Some(labels(&[("a", "1")])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = from_inspect(&inspect).unwrap();
        assert_eq!(
            (info.name.as_str(), info.state),
            ("app", ContainerState::Created)
        );
        assert!(info.networks.is_empty());
    }

    #[test]
    fn event_attributes_give_labels_without_docker_extras() {
        let attrs = labels(&[("name", "app"), ("image", "busybox"), ("tier", "web")]);
        let info = from_event("abc", "start", &attrs).unwrap();
        assert_eq!(info.name, "app");
        assert_eq!(info.state, ContainerState::Running);
        assert_eq!(info.labels.keys().collect::<Vec<_>>(), ["tier"]);
        assert!(from_event("abc", "rename", &attrs).is_none());
    }
}
