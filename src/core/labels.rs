//! Container labels → a validated certificate spec, or an error naming the bad label and the rule.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::container::ContainerInfo;
use super::names::{CertName, DnsName, San, Usage};
use super::policy::{MAX_SANS, NamePolicy, PolicyError, TtlPolicy};

/// What [`parse`] needs besides the container: the label prefix and the CA's policies.
#[derive(Debug, Clone, Copy)]
pub struct LabelContext<'a> {
    /// `--label-prefix`, without the trailing dot (`certdock`).
    pub prefix: &'a str,
    pub names: &'a NamePolicy,
    pub ttls: &'a TtlPolicy,
    /// Whether `--proxy-network` is set; it is the default of `<prefix>.network`.
    pub proxy_network_configured: bool,
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
}

/// Where the issued files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Copied into the container under [`CertSpec::path`].
    Container,
    /// Written under the output directory, `certs/NAME/`.
    Volume,
    /// Issued and kept, delivered nowhere (e.g. only for Traefik's `tls.certificates`).
    None,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Container => "container",
            Delivery::Volume => "volume",
            Delivery::None => "none",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An absolute directory inside a container: no `.`/`..`/empty components, no trailing `/`,
/// printable ASCII without spaces, quotes or backslashes, so it is safe in a tar header, a
/// log line or a shell command alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPath(String);

/// The longest `<prefix>.path` accepted; far beyond any real directory, short enough for tar.
pub const MAX_PATH_LEN: usize = 256;

impl ContainerPath {
    pub const DEFAULT: &'static str = "/run/certdock";

    pub fn parse(input: &str) -> Result<Self, String> {
        if input.len() > MAX_PATH_LEN {
            return Err(format!(
                "a path may have at most {MAX_PATH_LEN} characters, this one has {}",
                input.len()
            ));
        }
        if let Some(c) = input
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '`' | '\\'))
        {
            return Err(format!(
                "a path may contain only printable ASCII without spaces, quotes or backslashes, not {c:?}"
            ));
        }
        let Some(rest) = input.strip_prefix('/') else {
            return Err("the path must be absolute (start with '/')".into());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err("the path may not be '/' itself".into());
        }
        for component in rest.split('/') {
            match component {
                "" => return Err("the path may not contain empty components ('//')".into()),
                "." | ".." => {
                    return Err("the path may not contain '.' or '..' components".into());
                }
                _ => {}
            }
        }
        // Kernel filesystems: a copy there is never what the user meant and can only do harm.
        let first = rest.split('/').next().unwrap_or_default();
        if matches!(first, "proc" | "sys" | "dev") {
            return Err(format!("the path may not lie under /{first}"));
        }
        Ok(Self(format!("/{rest}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ContainerPath {
    fn default() -> Self {
        Self(Self::DEFAULT.to_string())
    }
}

impl fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Numeric owner of delivered files (names would need the container's `/etc/passwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn parse(input: &str) -> Result<Self, String> {
        let rule = || "owner must be uid:gid, two decimal numbers below 2^32 (e.g. 1000:1000)";
        let (uid, gid) = input
            .trim()
            .split_once(':')
            .ok_or_else(|| rule().to_string())?;
        Ok(Self {
            uid: parse_id(uid).ok_or_else(|| rule().to_string())?,
            gid: parse_id(gid).ok_or_else(|| rule().to_string())?,
        })
    }
}

/// Plain digits only: `u32::from_str` would also take `+5`.
fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// What to do to the container after every delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reload {
    Signal(Signal),
    Restart,
}

impl Reload {
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.trim().eq_ignore_ascii_case("restart") {
            return Ok(Reload::Restart);
        }
        Signal::parse(input).map(Reload::Signal)
    }
}

impl fmt::Display for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reload::Signal(s) => f.write_str(s.name()),
            Reload::Restart => f.write_str("restart"),
        }
    }
}

/// The signals a reload may send. SIGKILL and SIGSTOP are absent on purpose: a reload must
/// never kill or freeze the process it is meant to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Hup,
    Int,
    Quit,
    Term,
    Usr1,
    Usr2,
    Winch,
}

impl Signal {
    pub const ALL: [Signal; 7] = [
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
        Signal::Term,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Winch,
    ];

    /// The name Docker's kill API takes, e.g. `SIGHUP`.
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Quit => "SIGQUIT",
            Signal::Term => "SIGTERM",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
            Signal::Winch => "SIGWINCH",
        }
    }

    /// `SIGHUP` or `HUP`, any case.
    pub fn parse(input: &str) -> Result<Self, String> {
        let upper = input.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if matches!(bare, "KILL" | "STOP") {
            return Err(format!(
                "SIG{bare} is refused: a reload must not kill or stop the container; use `restart` to restart it"
            ));
        }
        Signal::ALL
            .into_iter()
            .find(|s| &s.name()[3..] == bare)
            .ok_or_else(|| {
                let names: Vec<&str> = Signal::ALL.iter().map(Signal::name).collect();
                format!("reload must be `restart` or one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
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
const KNOWN: [&str; 11] = [
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
    let labels = Labels {
        container,
        prefix: ctx.prefix,
    };
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
        Some(v) => Usage::parse(v).map_err(|e| labels.err("usage", v, e.to_string()))?,
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

    let mut sans = SanList::default();
    let name_is_dns = match name.as_dns() {
        Some(d) => {
            sans.push(San::Dns(d), Origin::Name);
            true
        }
        None => false,
    };
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
    labels.check_policy(ctx.names, &sans, &name, name_is_dns)?;

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
}

impl<'a> Labels<'a> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    fn get(&self, suffix: &str) -> Option<&'a str> {
        self.container
            .labels
            .get(&self.key(suffix))
            .map(String::as_str)
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
                    LabelError::new(key, rule, format!("Host({host:?}) is not a DNS name: {e}"))
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
        name_is_dns: bool,
    ) -> Result<(), LabelError> {
        let Err(err) = policy.check(&sans.sans) else {
            return Ok(());
        };
        let culprit = sans
            .sans
            .iter()
            .zip(&sans.origins)
            .find(|(san, _)| policy.check(std::slice::from_ref(*san)).is_err());
        match (culprit, &err) {
            (Some((_, Origin::Name)), _) => Err(self.err("name", name.as_str(), err.to_string())),
            (Some((_, Origin::Sans)), _) => {
                Err(self.err("sans", self.get("sans").unwrap_or_default(), err.to_string()))
            }
            (Some((_, Origin::Router(key))), _) => {
                let rule = self.container.labels.get(key).map(String::as_str);
                Err(LabelError::new(key, rule.unwrap_or_default(), err.to_string()))
            }
            (None, PolicyError::NoNames) if !name_is_dns => Err(self.err(
                "name",
                name.as_str(),
                format!(
                    "{err}: {name} is not a DNS name, so it is only the subject CN; add names with {}",
                    self.key("sans")
                ),
            )),
            (None, _) if self.get("sans").is_some() => {
                Err(self.err("sans", self.get("sans").unwrap_or_default(), err.to_string()))
            }
            (None, _) => Err(self.err("traefik.hosts", "true", err.to_string())),
        }
    }
}

/// Extracts `Host()` names from Traefik router rules, v2 (`Host(`a`,`b`)`) and v3
/// (`Host(`a`) || Host(`b`)`). Other matchers are skipped; names under a negation are left out,
/// since `!Host(`a`)` means "not a".
mod host_rule {
    /// The rule is read once, left to right, so work is linear in its length.
    pub fn hosts(rule: &str) -> Result<Vec<String>, String> {
        let b = rule.as_bytes();
        let mut out = Vec::new();
        // One entry per open parenthesis: whether the group is negated (itself or by a parent).
        let mut groups: Vec<bool> = Vec::new();
        let mut negate_next = false;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b'`' | b'"' => {
                    // A quoted string outside a Host() matcher: skip it whole, so text such as
                    // PathPrefix(`/Host(`) is not mistaken for a matcher.
                    i = skip_string(b, i)?;
                    negate_next = false;
                }
                b'!' => {
                    negate_next = true;
                    i += 1;
                }
                b'(' => {
                    let parent = groups.last().copied().unwrap_or(false);
                    groups.push(parent || negate_next);
                    negate_next = false;
                    i += 1;
                }
                b')' => {
                    groups.pop();
                    i += 1;
                }
                c if c.is_ascii_alphanumeric() || c == b'_' => {
                    let start = i;
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                    let ident = &rule[start..i];
                    let negated = negate_next || groups.last().copied().unwrap_or(false);
                    negate_next = false;
                    let mut j = i;
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < b.len() && b[j] == b'(' {
                        let (args, end) = arguments(rule, j)?;
                        if ident == "Host" {
                            if args.is_empty() {
                                return Err("Host() has no argument".into());
                            }
                            if !negated {
                                out.extend(args);
                            }
                        }
                        i = end;
                    }
                }
                _ => i += 1,
            }
        }
        Ok(out)
    }

    /// Reads `(arg, arg, …)` starting at the `(` at `open`: the quoted strings and the index after `)`.
    fn arguments(rule: &str, open: usize) -> Result<(Vec<String>, usize), String> {
        let b = rule.as_bytes();
        let mut args = Vec::new();
        let mut i = open + 1;
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                i += 1;
            }
            match b.get(i) {
                None => return Err("a matcher's '(' is never closed".into()),
                Some(b')') => return Ok((args, i + 1)),
                Some(b'`' | b'"') => {
                    let end = skip_string(b, i)?;
                    args.push(rule[i + 1..end - 1].to_string());
                    i = end;
                }
                Some(_) => {
                    return Err(
                        "matcher arguments must be strings in backticks or double quotes".into(),
                    );
                }
            }
        }
    }

    /// Index just after the string that opens at `start`. Backtick strings have no escapes;
    /// in double-quoted ones a backslash escapes the next byte, as in Go.
    fn skip_string(b: &[u8], start: usize) -> Result<usize, String> {
        let quote = b[start];
        let mut i = start + 1;
        while i < b.len() {
            if b[i] == quote {
                return Ok(i + 1);
            }
            i += if quote == b'"' && b[i] == b'\\' { 2 } else { 1 };
        }
        Err("a quoted string is never closed".into())
    }
}

#[cfg(test)]
mod tests;
