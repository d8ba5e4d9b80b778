//! Container labels → a validated certificate spec, or an error naming the bad label and the rule.

use std::collections::BTreeSet;
use std::time::Duration;

use super::authz::{AllowList, GroupName, parse_groups};
use super::container::ContainerInfo;
use super::names::{CertName, DnsName, San, Usage};
use super::policy::{MAX_SANS, NamePolicy, PolicyError, TtlPolicy};

mod host_rule;
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

// === impl Labels ===

/// The labels of one container, read through the prefix.
struct Labels<'a> {
    container: &'a ContainerInfo,
    prefix: &'a str,
    /// `(suffix, value)` of every `<prefix>.*` label, found in one pass: reading a label then
    /// costs no allocation (planning reads every container's labels on every wake-up).
    own: Vec<(&'a str, &'a str)>,
}

impl<'a> Labels<'a> {
    fn new(container: &'a ContainerInfo, prefix: &'a str) -> Self {
        let own = container
            .labels
            .iter()
            .filter_map(|(k, v)| {
                let suffix = k.strip_prefix(prefix)?.strip_prefix('.')?;
                Some((suffix, v.as_str()))
            })
            .collect();
        Self {
            container,
            prefix,
            own,
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    fn get(&self, suffix: &str) -> Option<&'a str> {
        self.own.iter().find(|(k, _)| *k == suffix).map(|(_, v)| *v)
    }

    fn err(&self, suffix: &str, value: &str, rule: impl Into<String>) -> LabelError {
        LabelError::new(&self.key(suffix), value, rule)
    }

    /// Exactly `true` or `false` in any case: `yes`, `1` or `on` are refused rather than guessed.
    fn bool(&self, suffix: &str, value: &str) -> Result<bool, LabelError> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if v.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(self.err(suffix, value, "must be `true` or `false`"))
        }
    }

    /// A typo such as `certdock.ttll` would otherwise be silently ignored.
    fn refuse_unknown(&self) -> Result<(), LabelError> {
        let dotted = format!("{}.", self.prefix);
        for (key, value) in &self.container.labels {
            let Some(suffix) = key.strip_prefix(&dotted) else {
                continue;
            };
            if !KNOWN.contains(&suffix) {
                return Err(LabelError::new(
                    key,
                    value,
                    format!(
                        "unknown label; {dotted}* labels are: {}",
                        KNOWN.map(|k| format!("{dotted}{k}")).join(", ")
                    ),
                ));
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(LabelError::new(
                    key,
                    value,
                    format!(
                        "the value is {} bytes long; at most {MAX_VALUE_LEN} are read",
                        value.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `<prefix>.name`, else the Compose service name, else the container name.
    fn name(&self) -> Result<CertName, LabelError> {
        if let Some(v) = self.get("name") {
            return CertName::parse(v).map_err(|e| self.err("name", v, e.to_string()));
        }
        let (source, default) = match self.container.compose_service() {
            Some(s) => ("the Compose service name", s),
            None => ("the container name", self.container.name.as_str()),
        };
        // Compose and Docker names allow `_`, DNS names do not; only a derived default is
        // rewritten, an explicit label is taken as written.
        let normalised = default.trim_start_matches('/').replace('_', "-");
        CertName::parse(&normalised).map_err(|e| {
            self.err(
                "name",
                default,
                format!(
                    "{e}; the default comes from {source}: set {} explicitly",
                    self.key("name")
                ),
            )
        })
    }

    /// Comma separated; empty items (a trailing comma) are skipped.
    fn extra_sans(&self, value: &str) -> Result<Vec<San>, LabelError> {
        let mut out = Vec::new();
        for item in value.split(',').filter(|s| !s.trim().is_empty()) {
            if out.len() == MAX_SANS {
                return Err(self.err(
                    "sans",
                    value,
                    format!("at most {MAX_SANS} names are accepted"),
                ));
            }
            let san = San::parse(item).map_err(|e| self.err("sans", value, e.to_string()))?;
            out.push(san);
        }
        Ok(out)
    }

    /// Every `Host()` name of every HTTP router rule, with the label it came from.
    fn traefik_hosts(&self) -> Result<Vec<(DnsName, String)>, LabelError> {
        let mut out = Vec::new();
        for (key, rule) in &self.container.labels {
            let Some(router) = key
                .strip_prefix(TRAEFIK_ROUTERS)
                .and_then(|r| r.strip_suffix(".rule"))
            else {
                continue;
            };
            if router.is_empty() || router.contains('.') {
                continue;
            }
            if rule.len() > MAX_VALUE_LEN {
                return Err(LabelError::new(
                    key,
                    rule,
                    format!("longer than {MAX_VALUE_LEN} bytes"),
                ));
            }
            let hosts = host_rule::hosts(rule).map_err(|e| LabelError::new(key, rule, e))?;
            for host in hosts {
                if out.len() == MAX_SANS {
                    return Err(LabelError::new(
                        key,
                        rule,
                        format!(
                            "more than {MAX_SANS} Host() names in this container's router rules"
                        ),
                    ));
                }
                let name = DnsName::parse(&host).map_err(|e| {
                    LabelError::new(key, rule, format!("a Host() name is refused: {e}"))
                })?;
                out.push((name, key.clone()));
            }
        }
        Ok(out)
    }

    /// Blames the label that brought the first refused name.
    fn check_policy(
        &self,
        policy: &NamePolicy,
        sans: &SanList,
        name: &CertName,
    ) -> Result<(), LabelError> {
        let Err(err) = policy.check(&sans.sans) else {
            return Ok(());
        };
        let sans_value = || self.get("sans").unwrap_or_default();
        match err {
            // Only a name that is not a DNS name, alone, leaves the list empty.
            PolicyError::NoNames => Err(self.err(
                "name",
                name.as_str(),
                format!(
                    "{err}: {name} is not a DNS name, so it is only the subject CN; add names with {}",
                    self.key("sans")
                ),
            )),
            PolicyError::TooManyNames { .. } if self.get("sans").is_some() => {
                Err(self.err("sans", sans_value(), err.to_string()))
            }
            PolicyError::TooManyNames { .. } => {
                Err(self.err("traefik.hosts", "true", err.to_string()))
            }
            // `check` stops at the first refused name; the same name, checked alone, tells its label.
            _ => {
                let origin = sans
                    .sans
                    .iter()
                    .zip(&sans.origins)
                    .find(|(san, _)| policy.check(std::slice::from_ref(*san)).is_err())
                    .map_or(&Origin::Sans, |(_, o)| o);
                Err(match origin {
                    Origin::Name => self.err("name", name.as_str(), err.to_string()),
                    Origin::Sans => self.err("sans", sans_value(), err.to_string()),
                    Origin::Router(key) => {
                        let rule = self.container.labels.get(key).map(String::as_str);
                        LabelError::new(key, rule.unwrap_or_default(), err.to_string())
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod tests;
