//! Settings: a flag, else a `CERTDOCK_*` environment variable, else a key of the TOML file
//! (`--config`), else the default. TOML keys are the flag names with underscores.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::limits::{Limits, connection_cap, raise_open_file_limit};
use crate::ca::authority::CaLifetimes;
use crate::ca::keys::KeyType;
use crate::ca::local::Policy;
use crate::core::names::San;
use crate::core::policy::{NamePolicy, NameRule, TtlPolicy, parse_duration};

/// The defaults of SPEC.md, in one place: `resolve` applies them and `--help` shows them.
pub mod defaults {
    pub const STATE_DIR: &str = "/var/lib/certdock";
    pub const OUT_DIR: &str = "/var/lib/certdock/out";
    pub const LISTEN: &str = "0.0.0.0:8443";
    pub const DEFAULT_TTL: &str = "24h";
    pub const MIN_TTL: &str = "5m";
    pub const MAX_TTL: &str = "30d";
    pub const RESYNC_INTERVAL: &str = "60s";
    pub const ORPHAN_GRACE: &str = "10m";
    pub const LABEL_PREFIX: &str = "certdock";
    pub const LOG_FORMAT: &str = "text";
    pub const KEY_TYPE: &str = "ecdsa-p256";
    pub const HANDSHAKE_TIMEOUT: &str = "10s";
    pub const HEADER_TIMEOUT: &str = "10s";
    pub const BODY_TIMEOUT: &str = "10s";
    pub const MAX_CONNECTIONS: &str = "three quarters of the open-file limit, at most 4096";
    pub const ROLLOVER_SPREAD: &str = "15m";
}

/// One line of `--help`: what the setting does and its default. The fields are `Option`s (so
/// that the file may fill what flags leave out), which hides clap's own `[default: …]`.
fn help(what: &str, default: &str) -> String {
    format!("{what} [default: {default}]")
}

/// The settings as given (flags and environment through clap, the file through serde).
/// Every field is optional here; [`Settings::resolve`] applies the file and the defaults.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    #[arg(long, env = "CERTDOCK_CONFIG", global = true, value_name = "FILE",
        help = help("TOML file with any of these settings (keys: the flag names with underscores); flags and environment win over it", "none"))]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[arg(long, env = "CERTDOCK_STATE_DIR", global = true, value_name = "DIR",
        help = help("CA keys, the inventory and the tokens (mode 0700)", defaults::STATE_DIR))]
    pub state_dir: Option<PathBuf>,
    #[arg(long, env = "CERTDOCK_OUT_DIR", global = true, value_name = "DIR",
        help = help("Where ca.pem, traefik/, caddy/ and certs/ are written", defaults::OUT_DIR))]
    pub out_dir: Option<PathBuf>,
    #[arg(long, env = "CERTDOCK_TRAEFIK_OUT_DIR", global = true, value_name = "DIR",
        help = help("The output directory as Traefik mounts it (the paths inside traefik/certdock.yml)", "the output directory"))]
    pub traefik_out_dir: Option<PathBuf>,
    #[arg(long, env = "CERTDOCK_PROXY_NETWORK", global = true, value_name = "NETWORK",
        help = help("Docker network that labelled containers are attached to, for the proxy to reach them", "none: no attaching"))]
    pub proxy_network: Option<String>,
    #[arg(long, env = "CERTDOCK_LISTEN", global = true, value_name = "ADDR:PORT",
        help = help("Address of the HTTPS API (run, serve)", defaults::LISTEN))]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "CERTDOCK_API_NAME", global = true, value_name = "NAMES",
        help = help("DNS names and IPs of the HTTPS API's own certificate, comma separated; never issued to a container", "the host name"))]
    pub api_name: Option<StringOrList>,
    #[arg(long, env = "CERTDOCK_DEFAULT_TTL", global = true, value_name = "DURATION",
        help = help("Lifetime of a certificate that asks for none (`90m`, `24h`, `7d`)", defaults::DEFAULT_TTL))]
    pub default_ttl: Option<String>,
    #[arg(long, env = "CERTDOCK_MIN_TTL", global = true, value_name = "DURATION",
        help = help("Shortest lifetime a label, token or request may ask for; shorter is refused", defaults::MIN_TTL))]
    pub min_ttl: Option<String>,
    #[arg(long, env = "CERTDOCK_MAX_TTL", global = true, value_name = "DURATION",
        help = help("Longest lifetime a label, token or request may ask for; longer is refused", defaults::MAX_TTL))]
    pub max_ttl: Option<String>,
    #[arg(long, env = "CERTDOCK_RESYNC_INTERVAL", global = true, value_name = "DURATION",
        help = help("How often every container is listed again, in case Docker dropped events (at least 1s)", defaults::RESYNC_INTERVAL))]
    pub resync_interval: Option<String>,
    #[arg(long, env = "CERTDOCK_ALLOW_DOMAIN", global = true, value_name = "RULES",
        help = help("DNS suffixes and IP ranges (CIDR) that labels, tokens, agents and requests may be certified for, comma separated; the API's own names are not bound by it", "none: any name"))]
    pub allow_domain: Option<StringOrList>,
    #[arg(long, env = "CERTDOCK_DENY_DOMAIN", global = true, value_name = "RULES",
        help = help("DNS suffixes and IP ranges (CIDR) that are never certified, comma separated; beats the allow list", "none"))]
    pub deny_domain: Option<StringOrList>,
    #[arg(long, env = "CERTDOCK_ALLOW_WILDCARDS", global = true, value_name = "BOOL",
        help = help("Allow wildcard names (`*.example.com`): true or false", "false"))]
    pub allow_wildcards: Option<bool>,
    #[arg(long, env = "CERTDOCK_ORPHAN_GRACE", global = true, value_name = "DURATION",
        help = help("How long the files of a certificate that no container uses any more stay under certs/", defaults::ORPHAN_GRACE))]
    pub orphan_grace: Option<String>,
    #[arg(long, env = "CERTDOCK_LABEL_PREFIX", global = true, value_name = "PREFIX",
        help = help("Prefix of the labels certdock reads (`PREFIX.enable=true`…)", defaults::LABEL_PREFIX))]
    pub label_prefix: Option<String>,
    #[arg(long, env = "CERTDOCK_LOG_FORMAT", global = true, value_name = "FORMAT",
        help = help("Log format: `text`, or `json` for one JSON object per line", defaults::LOG_FORMAT))]
    pub log_format: Option<String>,
    #[arg(long, env = "CERTDOCK_KEY_TYPE", global = true, value_name = "TYPE",
        help = help("Key algorithm for new keys: `ecdsa-p256` or `ed25519`", defaults::KEY_TYPE))]
    pub key_type: Option<String>,
    #[arg(long, env = "CERTDOCK_ACME_HTTP_PORT", global = true, value_name = "PORT",
        help = help("Port the CA connects to on a name being validated with ACME http-01", "80"))]
    pub acme_http_port: Option<u16>,
    #[arg(long, env = "CERTDOCK_ACME_TLS_PORT", global = true, value_name = "PORT",
        help = help("Port the CA connects to on a name being validated with ACME tls-alpn-01", "443"))]
    pub acme_tls_port: Option<u16>,
    #[arg(long, env = "CERTDOCK_ACME_EAB", global = true, value_name = "BOOL",
        help = help("New ACME accounts need an External Account Binding (`certdock token create --kind acme`): true or false", "false"))]
    pub acme_eab: Option<bool>,
    #[arg(long, env = "CERTDOCK_HANDSHAKE_TIMEOUT", global = true, value_name = "DURATION",
        help = help("A connection that has not finished its TLS handshake by then is closed (every listener)", defaults::HANDSHAKE_TIMEOUT))]
    pub handshake_timeout: Option<String>,
    #[arg(long, env = "CERTDOCK_HEADER_TIMEOUT", global = true, value_name = "DURATION",
        help = help("A connection that has not sent a complete request head by then (after its handshake, or idle after an answer: the keep-alive limit) is closed", defaults::HEADER_TIMEOUT))]
    pub header_timeout: Option<String>,
    #[arg(long, env = "CERTDOCK_BODY_TIMEOUT", global = true, value_name = "DURATION",
        help = help("A request whose body has not fully arrived by then (after its head) is answered 408 and its connection closed", defaults::BODY_TIMEOUT))]
    pub body_timeout: Option<String>,
    #[arg(long, env = "CERTDOCK_MAX_CONNECTIONS", global = true, value_name = "N",
        help = help("Connections a listener holds at once; at the cap the oldest idle one is closed for a newcomer. Kept 64 below the open-file limit, whose soft value is raised to the hard one at start", defaults::MAX_CONNECTIONS))]
    pub max_connections: Option<usize>,
    #[arg(long, env = "CERTDOCK_ROLLOVER_SPREAD", global = true, value_name = "DURATION",
        help = help("After a CA rotation, certificates issued under the old chain are re-issued spread over this", defaults::ROLLOVER_SPREAD))]
    pub rollover_spread: Option<String>,
    #[arg(long, env = "CERTDOCK_ROOT_OVERLAP", global = true, value_name = "DURATION",
        help = help("How long a replaced root stays in ca.pem after `ca rotate --root`", "until every certificate it vouched for has expired, plus a day"))]
    pub root_overlap: Option<String>,
    /// `[traefik.options]` in the TOML file: TLS options merged into every option certdock writes.
    #[arg(skip)]
    pub traefik: Option<toml::Table>,
}

/// A comma-separated string on the command line, a string or an array in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl std::str::FromStr for StringOrList {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(StringOrList::One(s.to_string()))
    }
}

impl StringOrList {
    fn items(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            StringOrList::Many(v) => v
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The effective settings, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub out_dir: PathBuf,
    pub traefik_out_dir: PathBuf,
    pub proxy_network: Option<String>,
    pub listen: SocketAddr,
    pub api_names: Vec<San>,
    pub ttls: TtlPolicy,
    pub resync_interval: Duration,
    pub orphan_grace: Duration,
    pub names: NamePolicy,
    pub label_prefix: String,
    pub log_format: LogFormat,
    pub key_type: KeyType,
    pub traefik_options: toml::Table,
    pub acme_http_port: u16,
    pub acme_tls_port: u16,
    pub acme_eab: bool,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// `None`: derived from the open-file limit at start (see [`Settings::limits`]).
    pub max_connections: Option<usize>,
    pub rollover_spread: Duration,
    pub root_overlap: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl ToString) -> SettingsError {
    SettingsError::Invalid {
        name,
        reason: reason.to_string(),
    }
}

fn duration(
    name: &'static str,
    v: Option<String>,
    default: &str,
) -> Result<Duration, SettingsError> {
    parse_duration(v.as_deref().unwrap_or(default)).map_err(|e| invalid(name, e))
}

impl RawSettings {
    /// Reads the TOML file named by `--config`, if any.
    fn load_file(path: &Path) -> Result<RawSettings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| SettingsError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// `self` (flags and environment) over `file` over nothing.
    fn over(self, file: RawSettings) -> RawSettings {
        RawSettings {
            config: self.config,
            state_dir: self.state_dir.or(file.state_dir),
            out_dir: self.out_dir.or(file.out_dir),
            traefik_out_dir: self.traefik_out_dir.or(file.traefik_out_dir),
            proxy_network: self.proxy_network.or(file.proxy_network),
            listen: self.listen.or(file.listen),
            api_name: self.api_name.or(file.api_name),
            default_ttl: self.default_ttl.or(file.default_ttl),
            min_ttl: self.min_ttl.or(file.min_ttl),
            max_ttl: self.max_ttl.or(file.max_ttl),
            resync_interval: self.resync_interval.or(file.resync_interval),
            allow_domain: self.allow_domain.or(file.allow_domain),
            deny_domain: self.deny_domain.or(file.deny_domain),
            allow_wildcards: self.allow_wildcards.or(file.allow_wildcards),
            orphan_grace: self.orphan_grace.or(file.orphan_grace),
            label_prefix: self.label_prefix.or(file.label_prefix),
            log_format: self.log_format.or(file.log_format),
            key_type: self.key_type.or(file.key_type),
            traefik: self.traefik.or(file.traefik),
            acme_http_port: self.acme_http_port.or(file.acme_http_port),
            acme_tls_port: self.acme_tls_port.or(file.acme_tls_port),
            acme_eab: self.acme_eab.or(file.acme_eab),
            handshake_timeout: self.handshake_timeout.or(file.handshake_timeout),
            header_timeout: self.header_timeout.or(file.header_timeout),
            body_timeout: self.body_timeout.or(file.body_timeout),
            max_connections: self.max_connections.or(file.max_connections),
            rollover_spread: self.rollover_spread.or(file.rollover_spread),
            root_overlap: self.root_overlap.or(file.root_overlap),
        }
    }
}

impl Settings {
    /// Applies the TOML file and the defaults to what flags and environment gave.
    pub fn resolve(raw: RawSettings) -> Result<Settings, SettingsError> {
        let raw = match raw.config.clone() {
            Some(path) => {
                let file = RawSettings::load_file(&path)?;
                raw.over(file)
            }
            None => raw,
        };
        // Relative directories are resolved against the working directory once, here: the
        // proxy configuration written later must name absolute paths.
        let absolute =
            |name: &'static str, p: PathBuf| std::path::absolute(&p).map_err(|e| invalid(name, e));
        let state_dir = absolute(
            "state_dir",
            raw.state_dir
                .unwrap_or_else(|| PathBuf::from(defaults::STATE_DIR)),
        )?;
        let out_dir = absolute(
            "out_dir",
            raw.out_dir
                .unwrap_or_else(|| PathBuf::from(defaults::OUT_DIR)),
        )?;
        let traefik_out_dir = match raw.traefik_out_dir {
            Some(p) => absolute("traefik_out_dir", p)?,
            None => out_dir.clone(),
        };
        let ttls = TtlPolicy {
            min: duration("min_ttl", raw.min_ttl, defaults::MIN_TTL)?,
            default: duration("default_ttl", raw.default_ttl, defaults::DEFAULT_TTL)?,
            max: duration("max_ttl", raw.max_ttl, defaults::MAX_TTL)?,
        };
        if !(ttls.min <= ttls.default && ttls.default <= ttls.max) {
            return Err(invalid(
                "default_ttl",
                "must satisfy min_ttl <= default_ttl <= max_ttl",
            ));
        }
        let resync_interval = duration(
            "resync_interval",
            raw.resync_interval,
            defaults::RESYNC_INTERVAL,
        )?;
        let orphan_grace = duration("orphan_grace", raw.orphan_grace, defaults::ORPHAN_GRACE)?;
        let rollover_spread = duration(
            "rollover_spread",
            raw.rollover_spread,
            defaults::ROLLOVER_SPREAD,
        )?;
        let root_overlap = match raw.root_overlap {
            Some(v) => Some(parse_duration(&v).map_err(|e| invalid("root_overlap", e))?),
            None => None,
        };
        if resync_interval < Duration::from_secs(1) {
            return Err(invalid("resync_interval", "must be at least 1s"));
        }
        let rules =
            |name: &'static str, v: Option<StringOrList>| -> Result<Vec<NameRule>, SettingsError> {
                v.map(|l| l.items())
                    .unwrap_or_default()
                    .iter()
                    .map(|s| NameRule::parse(s).map_err(|e| invalid(name, e)))
                    .collect()
            };
        let api_names = match raw.api_name {
            Some(l) => l.items(),
            None => vec![default_host_name()],
        };
        let api_names = api_names
            .iter()
            .map(|n| San::parse(n).map_err(|e| invalid("api_name", e)))
            .collect::<Result<Vec<_>, _>>()?;
        if api_names.is_empty() {
            return Err(invalid("api_name", "needs at least one name"));
        }
        let names = NamePolicy {
            allow: rules("allow_domain", raw.allow_domain)?,
            deny: rules("deny_domain", raw.deny_domain)?,
            allow_wildcards: raw.allow_wildcards.unwrap_or(false),
            reserved: api_names.clone(),
            for_certdock_itself: false,
        };
        let label_prefix = raw
            .label_prefix
            .unwrap_or_else(|| defaults::LABEL_PREFIX.into());
        if label_prefix.is_empty()
            || !label_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(invalid(
                "label_prefix",
                "use letters, digits, '.', '-' or '_'",
            ));
        }
        let log_format = match raw.log_format.as_deref().unwrap_or(defaults::LOG_FORMAT) {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is not `text` or `json`"),
                ));
            }
        };
        let key_type = raw
            .key_type
            .as_deref()
            .unwrap_or(defaults::KEY_TYPE)
            .parse()
            .map_err(|e: String| invalid("key_type", e))?;
        let traefik_options = match raw.traefik {
            None => toml::Table::new(),
            Some(mut t) => {
                let opts = t.remove("options");
                if let Some(k) = t.keys().next() {
                    return Err(invalid(
                        "traefik",
                        format!("unknown key [traefik.{k}]; only [traefik.options]"),
                    ));
                }
                match opts {
                    None => toml::Table::new(),
                    Some(toml::Value::Table(o)) => o,
                    Some(_) => return Err(invalid("traefik", "[traefik.options] must be a table")),
                }
            }
        };
        let deadline = |name: &'static str, v: Option<String>, default: &str| {
            let d = duration(name, v, default)?;
            if d < Duration::from_millis(100) {
                return Err(invalid(name, "must be at least 100ms"));
            }
            Ok(d)
        };
        let handshake_timeout = deadline(
            "handshake_timeout",
            raw.handshake_timeout,
            defaults::HANDSHAKE_TIMEOUT,
        )?;
        let header_timeout = deadline(
            "header_timeout",
            raw.header_timeout,
            defaults::HEADER_TIMEOUT,
        )?;
        let body_timeout = deadline("body_timeout", raw.body_timeout, defaults::BODY_TIMEOUT)?;
        if raw.max_connections == Some(0) {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        Ok(Settings {
            state_dir,
            out_dir,
            traefik_out_dir,
            proxy_network: raw.proxy_network.filter(|n| !n.is_empty()),
            listen: raw
                .listen
                .unwrap_or_else(|| defaults::LISTEN.parse().expect("a valid literal")),
            api_names,
            ttls,
            resync_interval,
            orphan_grace,
            names,
            label_prefix,
            log_format,
            key_type,
            traefik_options,
            acme_http_port: raw.acme_http_port.unwrap_or(80),
            acme_tls_port: raw.acme_tls_port.unwrap_or(443),
            acme_eab: raw.acme_eab.unwrap_or(false),
            handshake_timeout,
            header_timeout,
            body_timeout,
            max_connections: raw.max_connections,
            rollover_spread,
            root_overlap,
        })
    }

    pub fn policy(&self) -> Policy {
        Policy {
            names: self.names.clone(),
            ttls: self.ttls,
        }
    }

    /// The ACME server's settings; URLs fall back to the first API name and the listen port.
    pub fn acme(&self) -> crate::acme::AcmeConfig {
        let host = match self.api_names.first() {
            Some(San::Ip(std::net::IpAddr::V6(ip))) => format!("[{ip}]"),
            Some(n) => n.to_string(),
            None => "localhost".into(),
        };
        crate::acme::AcmeConfig {
            http_port: self.acme_http_port,
            tls_port: self.acme_tls_port,
            eab: self.acme_eab,
            fallback_authority: format!("{host}:{}", self.listen.port()),
        }
    }

    /// The listeners' deadlines and connection cap. Raises the soft open-file limit to the
    /// hard one first (once per process is enough; again is harmless), then keeps the cap
    /// below it.
    pub fn limits(&self) -> Limits {
        let open_files = raise_open_file_limit();
        let max_connections = connection_cap(self.max_connections, open_files);
        if self
            .max_connections
            .is_some_and(|asked| asked > max_connections)
        {
            tracing::warn!(
                asked = self.max_connections,
                max_connections,
                open_files,
                "--max-connections lowered to stay below the open-file limit"
            );
        }
        Limits {
            handshake: self.handshake_timeout,
            header: self.header_timeout,
            body: self.body_timeout,
            max_connections,
        }
    }

    pub fn lifetimes(&self) -> CaLifetimes {
        CaLifetimes {
            root_overlap: self.root_overlap,
            ..CaLifetimes::default()
        }
    }
}

fn default_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_ascii_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests;
