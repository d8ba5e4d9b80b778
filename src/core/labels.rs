//! Container labels → a validated certificate spec, or an error naming the bad label and the rule.

use std::collections::BTreeSet;
use std::time::Duration;

use super::authz::{AllowList, GroupName, parse_groups};
use super::container::ContainerInfo;
use super::names::{CertName, DnsName, San, Usage};
use super::policy::{MAX_SANS, NamePolicy, PolicyError, TtlPolicy};

mod host_rule;
mod reader;
use reader::Labels;
mod values;

pub use values::{ContainerPath, Delivery, MAX_PATH_LEN, Owner, Reload, Signal};

/// What [`parse`] needs besides the container: the label prefix and the CA's policies.
#[derive(Debug, Clone, Copy)]
pub struct LabelContext<'a> {
    /// `--label-prefix`, without the trailing dot (`certdock`).
    pub prefix: &'a str,
    pub names: &'a NamePolicy,
    pub ttls: &'a TtlPolicy,
    /// Whether `--proxy-network` is set; it is the default of `<prefix>.network`.
    pub proxy_network_configured: bool,
    /// Whether this process serves the forward-auth decider that `<prefix>.allow` needs.
    pub forward_auth: bool,
}

/// Everything the labels of one container ask for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub name: CertName,
    /// The name (when it is a DNS name), then `<prefix>.sans`, then Traefik `Host()` names;
    /// deduplicated, first occurrence kept, and accepted by the name policy.
    pub sans: Vec<San>,
    pub usage: Usage,
    pub ttl: Duration,
    pub delivery: Delivery,
    /// Where `container` delivery writes; parsed (and defaulted) whatever the delivery.
    pub path: ContainerPath,
    pub owner: Owner,
    pub reload: Option<Reload>,
    /// The container wants to be attached to the proxy network (when one is configured).
    pub network: bool,
    /// List the certificate in Traefik's `tls.certificates`.
    pub traefik_hosts: bool,
    /// `<prefix>.groups`: bound to the certificate (as URI SANs), so deciders anywhere see them.
    pub groups: BTreeSet<GroupName>,
    /// `<prefix>.allow`: who may call this server identity through its forward-auth middleware.
    pub allow: Option<AllowList>,
}

/// A label of one container is unusable. Only that container is affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label}={value:?}: {rule}")]
pub struct LabelError {
    /// The full label key, e.g. `certdock.ttl` (a hostile unknown key is truncated).
    pub label: String,
    /// The value, truncated for display.
    pub value: String,
    /// The rule the value broke, in words.
    pub rule: String,
}

const MAX_SHOWN_VALUE: usize = 80;
const MAX_SHOWN_KEY: usize = 128;
const MAX_SHOWN_RULE: usize = 400;

impl LabelError {
    /// Truncates every part: values come from whoever can start a container, and the message
    /// ends up in logs and in `certdock status`.
    pub fn new(label: &str, value: &str, rule: impl Into<String>) -> Self {
        Self {
            label: truncate(label, MAX_SHOWN_KEY),
            value: truncate(value, MAX_SHOWN_VALUE),
            rule: truncate(&rule.into(), MAX_SHOWN_RULE),
        }
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// Longest label value looked at. Docker bounds labels loosely; this bounds our work and
/// leaves room for [`MAX_SANS`] names of maximal length.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

const TRAEFIK_ROUTERS: &str = "traefik.http.routers.";

/// The labels below `<prefix>.` that [`parse`] understands.
const KNOWN: [&str; 13] = [
    "enable",
    "name",
    "sans",
    "usage",
    "ttl",
    "delivery",
    "path",
    "owner",
    "reload",
    "network",
    "traefik.hosts",
    "groups",
    "allow",
];

/// Where a SAN came from, so a policy refusal blames the right label.
#[derive(Clone)]
enum Origin {
    Name,
    Sans,
    Router(String),
}

/// Reads the `<prefix>.*` labels of a container. `Ok(None)` when it has not opted in
/// (`<prefix>.enable` absent or `false`); an error names the first bad label.
pub fn parse(
    container: &ContainerInfo,
    ctx: &LabelContext,
) -> Result<Option<CertSpec>, LabelError> {
    let labels = Labels::new(container, ctx.prefix);
    match labels.get("enable") {
        None => return Ok(None),
        Some(v) => {
            if !labels.bool("enable", v)? {
                return Ok(None);
            }
        }
    }
    labels.refuse_unknown()?;

    let name = labels.name()?;
    let usage = match labels.get("usage") {
        None => Usage::BOTH,
        // No certificate: only the trust, `ca.pem`, kept current through CA rollovers.
        Some(v) if v.trim().eq_ignore_ascii_case("none") => Usage::NONE,
        Some(v) => Usage::parse(v)
            .map_err(|e| labels.err("usage", v, format!("{e}, or `none` (only ca.pem)")))?,
    };
    let ttl = ctx.ttls.resolve_str(labels.get("ttl")).map_err(|e| {
        labels.err(
            "ttl",
            labels.get("ttl").unwrap_or("(default)"),
            e.to_string(),
        )
    })?;
    let delivery = match labels.get("delivery") {
        None => Delivery::Container,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "container" => Delivery::Container,
            "volume" => Delivery::Volume,
            "none" => Delivery::None,
            _ => {
                return Err(labels.err(
                    "delivery",
                    v,
                    "delivery must be `container`, `volume` or `none`",
                ));
            }
        },
    };
    let path = match labels.get("path") {
        None => ContainerPath::default(),
        Some(v) => ContainerPath::parse(v).map_err(|rule| labels.err("path", v, rule))?,
    };
    let owner = match labels.get("owner") {
        None => Owner::default(),
        Some(v) => Owner::parse(v).map_err(|rule| labels.err("owner", v, rule))?,
    };
    let reload = labels
        .get("reload")
        .map(|v| Reload::parse(v).map_err(|rule| labels.err("reload", v, rule)))
        .transpose()?;
    let network = match labels.get("network") {
        None => ctx.proxy_network_configured,
        Some(v) => labels.bool("network", v)?,
    };
    let traefik_hosts = match labels.get("traefik.hosts") {
        None => false,
        Some(v) => labels.bool("traefik.hosts", v)?,
    };
    if traefik_hosts && !usage.server {
        return Err(labels.err(
            "traefik.hosts",
            "true",
            format!(
                "Traefik needs a server certificate, but {}.usage is `{usage}`",
                ctx.prefix
            ),
        ));
    }

    if !usage.wants_certificate() {
        for label in super::trust_only::REFUSED_LABELS {
            if let Some(v) = labels.get(label)
                && let Some(rule) = super::trust_only::refusal(label, v)
            {
                return Err(labels.err(label, v, rule));
            }
        }
    }
    let groups = match labels.get("groups") {
        None => BTreeSet::new(),
        Some(v) => parse_groups(v).map_err(|e| labels.err("groups", v, e.to_string()))?,
    };
    let allow = labels
        .get("allow")
        .map(|v| AllowList::parse(v).map_err(|e| labels.err("allow", v, e.to_string())))
        .transpose()?;
    if allow.is_some() && !ctx.forward_auth {
        return Err(labels.err(
            "allow",
            labels.get("allow").unwrap_or_default(),
            "this certdock serves no forward-auth decider, so an allow list cannot be enforced here; run `certdock run` or `certdock agent` on this host",
        ));
    }
    if let (Some(_), false) = (&allow, usage.server) {
        return Err(labels.err(
            "allow",
            labels.get("allow").unwrap_or_default(),
            format!(
                "an allow list guards a server, but {}.usage is `{usage}`",
                ctx.prefix
            ),
        ));
    }

    let mut sans = SanList::default();
    if let Some(d) = name.as_dns() {
        sans.push(San::Dns(d), Origin::Name);
    }
    if let Some(v) = labels.get("sans") {
        for san in labels.extra_sans(v)? {
            sans.push(san, Origin::Sans);
        }
    }
    if traefik_hosts {
        let hosts = labels.traefik_hosts()?;
        if hosts.is_empty() {
            return Err(labels.err(
                "traefik.hosts",
                "true",
                format!("no Host() matcher found in any {TRAEFIK_ROUTERS}<router>.rule label of this container"),
            ));
        }
        for (host, key) in hosts {
            sans.push(San::Dns(host), Origin::Router(key));
        }
    }
    labels.check_policy(ctx.names, &sans, &name)?;

    Ok(Some(CertSpec {
        name,
        sans: sans.sans,
        usage,
        ttl,
        delivery,
        path,
        owner,
        reload,
        network,
        traefik_hosts,
        groups,
        allow,
    }))
}

/// SANs in first-seen order, each with the label it came from.
#[derive(Default)]
struct SanList {
    sans: Vec<San>,
    origins: Vec<Origin>,
    seen: BTreeSet<San>,
}

impl SanList {
    fn push(&mut self, san: San, origin: Origin) {
        if self.seen.insert(san.clone()) {
            self.sans.push(san);
            self.origins.push(origin);
        }
    }
}

#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod tests;
