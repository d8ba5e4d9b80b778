//! Settings: a flag, else a `CERTDOCK_*` environment variable, else a key of the TOML file
//! (`--config`), else the default. TOML keys are the flag names with underscores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::limits::{Limits, connection_cap, raise_open_file_limit};
use crate::ca::authority::CaLifetimes;
use crate::ca::keys::KeyType;
use crate::ca::local::Policy;
use crate::core::names::San;
use crate::core::policy::{NamePolicy, NameRule, TtlPolicy, parse_duration};

mod raw;
pub use raw::{RawSettings, StringOrList};

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
