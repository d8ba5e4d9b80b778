//! Renders `traefik/certdock.yml`, the Traefik v3 file-provider configuration, from a model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything `certdock.yml` says. Paths are as Traefik sees them (`--traefik-out-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraefikModel {
    /// One or more CA bundle files; clients and backends are verified against them.
    pub ca_files: Vec<String>,
    /// The user's `[traefik.options]`, merged into every TLS option certdock writes.
    pub base_options: TlsOptionsBase,
    /// `tls.certificates`: certificates of `certdock.traefik.hosts` containers.
    pub certificates: Vec<CertFiles>,
    /// The client certificate Traefik presents to backends through the `certdock` transports,
    /// and to certdock's forward-auth endpoint.
    pub transport_client: Option<CertFiles>,
    /// One middleware chain per server identity with an allow list (`certdock.allow`).
    pub forward_auth: Vec<ForwardAuth>,
    /// Hex digest of every file the configuration points to. Traefik rereads those files only
    /// when this file changes, so the digest is written into it.
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertFiles {
    pub cert_file: String,
    pub key_file: String,
}

/// A server identity whose callers certdock decides: routers use `certdock-allow-NAME@file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    /// The server's certificate name (`certdock.name`).
    pub server: String,
    /// Where Traefik asks: `https://<api name>:<port>/v1/forward-auth/NAME`, the decider on
    /// this host.
    pub address: String,
}

/// The middleware a router names (with `@file`) to admit only the clients a server allows.
pub fn allow_middleware(server: &str) -> String {
    format!("certdock-allow-{server}")
}

/// The headers the decider answers with; Traefik copies them to the request it forwards.
pub const AUTH_RESPONSE_HEADERS: [&str; 2] = ["X-Certdock-Client", "X-Certdock-Groups"];

/// Request headers a client must never set itself: the client-certificate headers the decider
/// reads and the identity headers it answers. Removed before `passTLSClientCert` sets the real
/// one, so a request without a verified client certificate reaches the decider with none.
const STRIPPED_HEADERS: [&str; 4] = [
    "X-Forwarded-Tls-Client-Cert",
    "Client-Cert",
    "X-Certdock-Client",
    "X-Certdock-Groups",
];
const STRIP: &str = "certdock-strip-client-headers";
const PASS: &str = "certdock-pass-client-cert";

/// TLS option settings the user sets once in certdock's configuration (snake_case keys).
/// Call [`TlsOptionsBase::validate`] when loading the configuration; [`render`] checks again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsOptionsBase {
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Vec<String>,
    pub curve_preferences: Vec<String>,
    pub alpn_protocols: Vec<String>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub disable_session_tickets: Option<bool>,
    /// Applies to `mTLS`; `sniStrictDisable` always says `false`, that is its purpose.
    pub sni_strict: Option<bool>,
}

/// The TLS versions Traefik understands, oldest first.
pub const TLS_VERSIONS: [&str; 4] = [
    "VersionTLS10",
    "VersionTLS11",
    "VersionTLS12",
    "VersionTLS13",
];

/// The only client authentication certdock writes: anything weaker would let anyone in.
pub const CLIENT_AUTH_TYPE: &str = "RequireAndVerifyClientCert";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraefikError {
    #[error(
        "no CA file: refusing to write an mTLS option that would not verify client certificates"
    )]
    NoCaFiles,
    #[error("traefik.options.{key} = {value:?}: {rule}")]
    BadOption {
        key: &'static str,
        value: String,
        rule: String,
    },
    #[error("{what} path {path:?} is empty or contains control characters")]
    BadPath { what: &'static str, path: String },
    #[error("revision {0:?} is not a non-empty lower-case hex digest")]
    BadRevision(String),
    #[error(
        "forward-auth for {0:?} needs certdock's own Traefik client certificate, which is not issued yet"
    )]
    NoAuthClient(String),
    #[error("forward-auth address {0:?} is not an https:// URL")]
    BadAuthAddress(String),
    #[error("serialising the Traefik configuration failed: {0}")]
    Serialize(String),
}

// === impl TlsOptionsBase ===

impl TlsOptionsBase {
    pub fn validate(&self) -> Result<(), TraefikError> {
        let version = |key: &'static str, v: &Option<String>| match v {
            Some(v) if !TLS_VERSIONS.contains(&v.as_str()) => Err(TraefikError::BadOption {
                key,
                value: v.clone(),
                rule: format!("must be one of {}", TLS_VERSIONS.join(", ")),
            }),
            _ => Ok(()),
        };
        version("min_version", &self.min_version)?;
        version("max_version", &self.max_version)?;
        if let (Some(min), Some(max)) = (&self.min_version, &self.max_version) {
            let rank = |v: &str| TLS_VERSIONS.iter().position(|x| *x == v);
            if rank(min) > rank(max) {
                return Err(TraefikError::BadOption {
                    key: "min_version",
                    value: min.clone(),
                    rule: format!("is above max_version {max}"),
                });
            }
        }
        // Go constant names (TLS_ECDHE_…, CurveP256, X25519MLKEM768) are plain identifiers.
        let identifiers = |key: &'static str, list: &[String]| {
            list.iter()
                .find(|s| {
                    s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .map_or(Ok(()), |s| {
                    Err(TraefikError::BadOption {
                        key,
                        value: s.clone(),
                        rule: "must be a name of letters, digits and '_'".into(),
                    })
                })
        };
        identifiers("cipher_suites", &self.cipher_suites)?;
        identifiers("curve_preferences", &self.curve_preferences)?;
        // ALPN ids are 1 to 255 bytes (RFC 7301); control characters are never meant.
        if let Some(p) = self
            .alpn_protocols
            .iter()
            .find(|p| p.is_empty() || p.len() > 255 || p.chars().any(char::is_control))
        {
            return Err(TraefikError::BadOption {
                key: "alpn_protocols",
                value: p.clone(),
                rule: "must be 1 to 255 bytes without control characters".into(),
            });
        }
        Ok(())
    }
}

// === render ===

/// The YAML for `certdock.yml`. Deterministic: the same model gives the same bytes, so the
/// writer can skip rewriting an unchanged file. Refuses a model without CA files (fail closed).
pub fn render(model: &TraefikModel) -> Result<String, TraefikError> {
    model.base_options.validate()?;
    if model.ca_files.is_empty() {
        return Err(TraefikError::NoCaFiles);
    }
    for path in &model.ca_files {
        check_path("CA file", path)?;
    }
    for c in model.certificates.iter().chain(&model.transport_client) {
        check_path("certificate", &c.cert_file)?;
        check_path("key", &c.key_file)?;
    }
    let rev = &model.revision;
    if rev.is_empty()
        || !rev
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(TraefikError::BadRevision(rev.clone()));
    }

    let base = OptionBody::from(&model.base_options);
    let client_certs: Vec<&CertFiles> = model.transport_client.iter().collect();
    let middlewares = middlewares(model)?;
    let doc = Dynamic {
        tls: Tls {
            options: Options {
                mtls: OptionBody {
                    client_auth: Some(ClientAuth {
                        ca_files: &model.ca_files,
                        client_auth_type: CLIENT_AUTH_TYPE,
                    }),
                    ..base.clone()
                },
                sni_strict_disable: OptionBody {
                    sni_strict: Some(false),
                    ..base
                },
            },
            certificates: model.certificates.iter().collect(),
        },
        http: Http {
            middlewares,
            servers_transports: Transports {
                certdock: HttpTransport {
                    root_cas: &model.ca_files,
                    certificates: client_certs.clone(),
                },
            },
        },
        tcp: Tcp {
            servers_transports: Transports {
                certdock: TcpTransport {
                    tls: TcpTransportTls {
                        root_cas: &model.ca_files,
                        certificates: client_certs,
                    },
                },
            },
        },
    };
    let body = serde_saphyr::to_string(&doc).map_err(|e| TraefikError::Serialize(e.to_string()))?;
    Ok(format!(
        "# Generated by certdock; do not edit: it is rewritten whenever a certificate or the CA changes.\n\
         # revision: {rev}\n{body}"
    ))
}

/// The forward-auth chains, plus the two middlewares every chain shares. Fails closed: an allow
/// list that Traefik could not ask about is an error, never a router left open.
fn middlewares(model: &TraefikModel) -> Result<BTreeMap<String, Middleware<'_>>, TraefikError> {
    let mut out = BTreeMap::new();
    if model.forward_auth.is_empty() {
        return Ok(out);
    }
    let client = match &model.transport_client {
        Some(c) => c,
        None => {
            return Err(TraefikError::NoAuthClient(
                model.forward_auth[0].server.clone(),
            ));
        }
    };
    out.insert(
        STRIP.to_string(),
        Middleware::Headers {
            custom_request_headers: STRIPPED_HEADERS.iter().map(|h| (*h, "")).collect(),
        },
    );
    out.insert(
        PASS.to_string(),
        Middleware::PassTlsClientCert { pem: true },
    );
    for fa in &model.forward_auth {
        if !fa.address.starts_with("https://") || fa.address.chars().any(char::is_control) {
            return Err(TraefikError::BadAuthAddress(fa.address.clone()));
        }
        let auth = format!("certdock-auth-{}", fa.server);
        out.insert(
            allow_middleware(&fa.server),
            Middleware::Chain {
                middlewares: vec![STRIP.to_string(), PASS.to_string(), auth.clone()],
            },
        );
        out.insert(
            auth,
            Middleware::ForwardAuth {
                address: &fa.address,
                tls: AuthTls {
                    ca: &model.ca_files[0],
                    cert: &client.cert_file,
                    key: &client.key_file,
                },
                auth_response_headers: &AUTH_RESPONSE_HEADERS,
            },
        );
    }
    Ok(out)
}

fn check_path(what: &'static str, path: &str) -> Result<(), TraefikError> {
    if path.is_empty() || path.chars().any(char::is_control) {
        return Err(TraefikError::BadPath {
            what,
            path: path.to_string(),
        });
    }
    Ok(())
}

// Serialised shape, in Traefik's key names. Field order is output order.

#[derive(Serialize)]
struct Dynamic<'a> {
    tls: Tls<'a>,
    http: Http<'a>,
    tcp: Tcp<'a>,
}

#[derive(Serialize)]
struct Tls<'a> {
    options: Options<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<&'a CertFiles>,
}

#[derive(Serialize)]
struct Options<'a> {
    #[serde(rename = "mTLS")]
    mtls: OptionBody<'a>,
    #[serde(rename = "sniStrictDisable")]
    sni_strict_disable: OptionBody<'a>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct OptionBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    min_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_version: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    cipher_suites: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    curve_preferences: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    alpn_protocols: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_session_tickets: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sni_strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_auth: Option<ClientAuth<'a>>,
}

impl<'a> From<&'a TlsOptionsBase> for OptionBody<'a> {
    fn from(b: &'a TlsOptionsBase) -> Self {
        Self {
            min_version: b.min_version.as_deref(),
            max_version: b.max_version.as_deref(),
            cipher_suites: &b.cipher_suites,
            curve_preferences: &b.curve_preferences,
            alpn_protocols: &b.alpn_protocols,
            prefer_server_cipher_suites: b.prefer_server_cipher_suites,
            disable_session_tickets: b.disable_session_tickets,
            sni_strict: b.sni_strict,
            client_auth: None,
        }
    }
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientAuth<'a> {
    ca_files: &'a [String],
    client_auth_type: &'static str,
}

#[derive(Serialize)]
struct Http<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    middlewares: BTreeMap<String, Middleware<'a>>,
    #[serde(rename = "serversTransports")]
    servers_transports: Transports<HttpTransport<'a>>,
}

#[derive(Serialize)]
enum Middleware<'a> {
    #[serde(rename = "headers", rename_all = "camelCase")]
    Headers {
        custom_request_headers: BTreeMap<&'static str, &'static str>,
    },
    #[serde(rename = "passTLSClientCert")]
    PassTlsClientCert { pem: bool },
    #[serde(rename = "chain")]
    Chain { middlewares: Vec<String> },
    #[serde(rename = "forwardAuth", rename_all = "camelCase")]
    ForwardAuth {
        address: &'a str,
        tls: AuthTls<'a>,
        auth_response_headers: &'static [&'static str],
    },
}

#[derive(Serialize)]
struct AuthTls<'a> {
    ca: &'a str,
    cert: &'a str,
    key: &'a str,
}

#[derive(Serialize)]
struct Tcp<'a> {
    #[serde(rename = "serversTransports")]
    servers_transports: Transports<TcpTransport<'a>>,
}

#[derive(Serialize)]
struct Transports<T> {
    certdock: T,
}

#[derive(Serialize)]
struct HttpTransport<'a> {
    #[serde(rename = "rootCAs")]
    root_cas: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<&'a CertFiles>,
}

#[derive(Serialize)]
struct TcpTransport<'a> {
    tls: TcpTransportTls<'a>,
}

#[derive(Serialize)]
struct TcpTransportTls<'a> {
    #[serde(rename = "rootCAs")]
    root_cas: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<&'a CertFiles>,
}

#[cfg(test)]
mod tests;
