//! A container together with what its labels ask for, parsed once per change of either.
//!
//! Parsing labels (names against the policy, Traefik rules, paths, owners) is the dearest part
//! of planning that depends on nothing but the container and the label settings. The
//! controller's store keeps each parse until the container or the settings change, so a
//! wake-up parses only what changed; the plan reads the parses and never parses itself.

use std::sync::Arc;

use super::container::ContainerInfo;
use super::container_set::ContainerSet;
use super::labels::{self, CertSpec, LabelContext, LabelError};
use super::names::CertName;
use super::policy::{NamePolicy, TtlPolicy};

/// One container and what its labels ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// Shared with the store that saw it: held once however many parses refer to it.
    pub container: Arc<ContainerInfo>,
    /// `Ok(None)`: the container does not enable certdock. `Err`: it does, and a label is bad.
    pub spec: Result<Option<CertSpec>, LabelError>,
}

impl Labelled {
    pub fn parse(container: Arc<ContainerInfo>, ctx: &LabelContext<'_>) -> Self {
        let spec = labels::parse(&container, ctx);
        Self { container, spec }
    }

    /// Every container parsed (for callers without a store: tests, benches, the fuzz targets).
    pub fn parse_all(containers: &[ContainerInfo], ctx: &LabelContext<'_>) -> ContainerSet {
        containers
            .iter()
            .map(|c| Arc::new(Self::parse(Arc::new(c.clone()), ctx)))
            .collect()
    }

    /// Whether the plan has anything to do with it: it asked for certdock, well or badly.
    pub fn asks(&self) -> bool {
        !matches!(self.spec, Ok(None))
    }

    /// The name it asks a certificate for, when its labels are valid and want one.
    pub fn cert_name(&self) -> Option<&CertName> {
        match &self.spec {
            Ok(Some(spec)) if spec.usage.wants_certificate() => Some(&spec.name),
            _ => None,
        }
    }
}

/// An owned copy of the label settings a parse was made under: when the running settings
/// differ (a reloaded config file), every parse is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSettings {
    prefix: String,
    names: NamePolicy,
    ttls: TtlPolicy,
    proxy_network_configured: bool,
    forward_auth: bool,
}

impl LabelSettings {
    pub fn of(ctx: &LabelContext<'_>) -> Self {
        Self {
            prefix: ctx.prefix.to_string(),
            names: ctx.names.clone(),
            ttls: *ctx.ttls,
            proxy_network_configured: ctx.proxy_network_configured,
            forward_auth: ctx.forward_auth,
        }
    }

    /// True when a parse made under `self` holds under `ctx` too.
    pub fn matches(&self, ctx: &LabelContext<'_>) -> bool {
        self.prefix == ctx.prefix
            && self.names == *ctx.names
            && self.ttls == *ctx.ttls
            && self.proxy_network_configured == ctx.proxy_network_configured
            && self.forward_auth == ctx.forward_auth
    }
}
