//! The settings as given: flags and environment (clap) and the `--config` file (serde), every
//! one optional; [`super::Settings::resolve`] applies the file over nothing and the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::SettingsError;
use super::defaults;

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
    pub(super) fn items(&self) -> Vec<String> {
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

impl RawSettings {
    /// Reads the TOML file named by `--config`, if any.
    pub(super) fn load_file(path: &Path) -> Result<RawSettings, SettingsError> {
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
    pub(super) fn over(self, file: RawSettings) -> RawSettings {
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
