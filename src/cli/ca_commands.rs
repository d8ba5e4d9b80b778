//! `init`, `issue`, `token create`, `revoke`, `settings`: the CA used from the command line.

use std::fs;
use std::path::PathBuf;

use time::OffsetDateTime;

use super::CmdResult;
use super::settings::Settings;
use crate::ca::authority::Authority;
use crate::ca::authorize::{ADMIN_GROUP, Local, Order};
use crate::ca::keys::SecretPem;
use crate::ca::local::{LocalCa, OpenMode};
use crate::ca::p12::build_p12;
use crate::core::authz::GroupName;
use crate::core::names::{CertName, San, Usage};
use crate::core::policy::{NamePolicy, NameRule, fmt_duration, parse_duration};
use crate::delivery::bundle::{Bundle, publish_dir};
use crate::store::atomic::{Mode, write_atomic};
use crate::store::ca_policy;
use crate::store::tokens::TokenKind;

/// The CA of the state directory, which must exist (`certdock init` or a first `run` made it).
fn open_existing(s: &Settings) -> Result<LocalCa, crate::ca::CaError> {
    LocalCa::open(
        &s.state_dir,
        s.policy(),
        s.lifetimes(),
        OpenMode::Existing,
        OffsetDateTime::now_utc(),
    )
}

pub fn init(s: &Settings, import_root: Option<PathBuf>, import_key: Option<PathBuf>) -> CmdResult {
    let import = match (import_root, import_key) {
        (Some(r), Some(k)) => {
            let cert = fs::read_to_string(&r)
                .map_err(|e| format!("--import-root {}: {e}", r.display()))?;
            let key =
                fs::read_to_string(&k).map_err(|e| format!("--import-key {}: {e}", k.display()))?;
            Some((cert, SecretPem::new(key)))
        }
        _ => None,
    };
    let ca = Authority::create(
        &s.state_dir,
        s.key_type,
        s.lifetimes(),
        import.as_ref().map(|(c, k)| (c.as_str(), k)),
        OffsetDateTime::now_utc(),
    )?;
    println!(
        "created the CA in {}\nroot fingerprint (SHA-256, for --ca-fingerprint): {}",
        s.state_dir.join("ca").display(),
        ca.root_fingerprint()
    );
    Ok(())
}

/// `certdock issue NAME …`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// Identity: subject CN and first DNS SAN.
    pub name: String,
    /// Extra DNS names or IP addresses (repeat, or comma separated).
    #[arg(long = "san", value_delimiter = ',')]
    pub sans: Vec<String>,
    /// `server`, `client` or `server,client`.
    #[arg(long, default_value = "server,client")]
    pub usage: String,
    /// Lifetime, e.g. 90m, 24h, 7d (default: --default-ttl).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Write cert.pem, key.pem, chain.pem, fullchain.pem and ca.pem into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write a PKCS#12 file (for browsers and phones); needs --p12-password-file.
    #[arg(long, requires = "p12_password_file")]
    pub p12: Option<PathBuf>,
    /// File whose first line is the PKCS#12 password.
    #[arg(long, requires = "p12")]
    pub p12_password_file: Option<PathBuf>,
    /// Bind the `certdock-admin` group: with client usage, this certificate may read
    /// `GET /ui` and `GET /v1/status` (only certificates issued here count as admins).
    #[arg(long)]
    pub admin: bool,
}

pub fn issue(s: &Settings, a: IssueArgs) -> CmdResult {
    // Everything is validated before anything is written: a refused request leaves no file.
    let name = CertName::parse(&a.name).map_err(|e| format!("NAME: {e}"))?;
    let mut sans = Vec::new();
    if let Some(d) = name.as_dns() {
        sans.push(San::Dns(d));
    }
    for raw in &a.sans {
        let san = San::parse(raw).map_err(|e| format!("--san {raw:?}: {e}"))?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    let usage = Usage::parse(&a.usage).map_err(|e| format!("--usage: {e}"))?;
    let ttl = a
        .ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| format!("--ttl: {e}"))?;
    let password = match &a.p12_password_file {
        Some(p) => Some(
            fs::read_to_string(p)
                .map_err(|e| format!("--p12-password-file {}: {e}", p.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        None => None,
    };
    if a.admin && !usage.client {
        return Err("--admin needs client usage (--usage client)".into());
    }
    let groups = if a.admin {
        std::iter::once(GroupName::parse(ADMIN_GROUP).map_err(|e| e.to_string())?).collect()
    } else {
        Default::default()
    };
    let ca = open_existing(s)?;
    let order = Order {
        name: name.clone(),
        sans,
        usage,
        groups,
        ttl,
        key_type: s.key_type,
    };
    let issued = ca
        .sign(
            ca.authorize_local(Local::Operator, order)?,
            OffsetDateTime::now_utc(),
        )?
        .wait()?;
    let bundle = Bundle {
        version: issued.serial.clone(),
        cert_pem: issued.cert_pem.clone(),
        key: issued.key.clone(),
        chain_pem: issued.chain_pem.clone(),
        ca_pem: issued.ca_pem.clone(),
    };
    if let Some(dir) = &a.out {
        publish_dir(dir, &bundle, None).map_err(|e| format!("--out {}: {e}", dir.display()))?;
    }
    if let (Some(p12), Some(pw)) = (&a.p12, &password) {
        let der = build_p12(&issued, name.as_str(), pw)?;
        write_atomic(p12, &der, Mode::Secret)
            .map_err(|e| format!("--p12 {}: {e}", p12.display()))?;
    }
    if a.out.is_none() && a.p12.is_none() {
        // No destination: print the bundle, key included, to stdout (as mkcert-like tools do).
        print!(
            "{}{}{}",
            bundle.cert_pem,
            bundle.chain_pem,
            bundle.key.secret_pem()
        );
    }
    eprintln!(
        "issued {} serial {} not after {}",
        name,
        issued.serial,
        issued
            .not_after
            .format(&time::format_description::well_known::Rfc3339)?
    );
    Ok(())
}

/// A token's scope only narrows the policy of the CA that will honour it (recorded by `run` or
/// `serve` in STATE/policy.json): a rule outside it is refused now, not at every use.
fn check_scope(s: &Settings, scope: &[NameRule]) -> CmdResult {
    let Some(recorded) = ca_policy::read(&s.state_dir)
        .map_err(|e| format!("{}: {e}", s.state_dir.join("policy.json").display()))?
    else {
        return Ok(());
    };
    let policy = NamePolicy {
        allow: recorded.allow,
        ..Default::default()
    };
    let outside = policy.outside_allow(scope);
    if outside.is_empty() {
        return Ok(());
    }
    let list = |rules: &mut dyn Iterator<Item = &NameRule>| {
        rules.map(ToString::to_string).collect::<Vec<_>>().join(",")
    };
    Err(format!(
        "--allow-domain: the token's scope {} lies outside the CA's policy --allow-domain {} \
         (of the running CA, recorded in {}); a scope may only narrow the policy",
        list(&mut outside.into_iter()),
        list(&mut policy.allow.iter()),
        s.state_dir.join("policy.json").display()
    )
    .into())
}

/// The token's scope is `--allow-domain` (the names it may be used for), within the CA policy.
pub fn token_create(s: &Settings, name: &str, ttl: &str, kind: &str) -> CmdResult {
    let ttl = parse_duration(ttl).map_err(|e| format!("--ttl: {e}"))?;
    let kind = match kind {
        "sign" => TokenKind::Sign,
        "agent" => TokenKind::Agent,
        "admin" => TokenKind::Admin,
        "acme" => TokenKind::Acme,
        other => {
            return Err(
                format!("--kind {other:?} is not `sign`, `agent`, `admin` or `acme`").into(),
            );
        }
    };
    // Checked now, not when the token is used: an agent is named after its token, so the name
    // must be a valid certificate name; other names are labels, but still printable and short.
    if kind == TokenKind::Agent {
        CertName::parse(name)
            .map_err(|e| format!("--name: an agent token names the agent's certificate: {e}"))?;
    } else if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err("--name: give 1 to 64 printable characters (who the token is for)".into());
    }
    let allow = s.names.allow.clone();
    let ca = open_existing(s)?;
    check_scope(s, &allow)?;
    let expires = OffsetDateTime::now_utc() + ttl;
    let (grant, secret) = ca
        .with_tokens(|t| t.create(name, kind, allow, expires.unix_timestamp()))?
        .map_err(|e| format!("token store: {e}"))?;
    if kind == TokenKind::Acme {
        // An ACME client takes the binding as two values (lego `--kid`/`--hmac`, certbot
        // `--eab-kid`/`--eab-hmac-key`).
        let prefix = format!("cdt_{}_", grant.id);
        let hmac = secret
            .secret_str()
            .strip_prefix(&prefix)
            .unwrap_or_default()
            .to_string();
        println!("kid={}\nhmac={hmac}", grant.id);
        return Ok(());
    }
    println!("{}", secret.secret_str());
    Ok(())
}

/// `certdock ca rotate [--root]`.
pub fn rotate(s: &Settings, root: bool) -> CmdResult {
    let ca = open_existing(s)?;
    ca.rotate(root, OffsetDateTime::now_utc())?;
    let facts = ca.chain_facts()?;
    if root {
        println!(
            "made a new root, cross-signed by the previous one\nroot fingerprint (SHA-256, for --ca-fingerprint): {}",
            ca.root_fingerprint()
        );
    } else {
        println!("made a new intermediate; the previous one stays trusted while it is valid");
    }
    for (f, role) in facts {
        println!(
            "{role:<22} {:<40} not after {}",
            f.common_name.unwrap_or_default(),
            f.not_after
        );
    }
    Ok(())
}

/// `certdock revoke SERIAL` or `certdock revoke --name NAME`: prints every serial revoked,
/// one a line (the one asked first; then those renewed from it).
pub fn revoke(s: &Settings, serial: Option<String>, name: Option<String>) -> CmdResult {
    let ca = open_existing(s)?;
    let now = OffsetDateTime::now_utc();
    let (what, serials) = match (serial, name) {
        (Some(serial), _) => {
            let serials = ca.revoke(&serial, now)?;
            (format!("certificate {serial}"), serials)
        }
        (None, Some(name)) => {
            let serials = ca.revoke_name(&name, now)?;
            (format!("identity {name}"), serials)
        }
        (None, None) => return Err("give a SERIAL or --name NAME".into()),
    };
    for serial in &serials {
        println!("{serial}");
    }
    eprintln!(
        "revoked {what}: {} certificate(s); the CRL lists them from now on",
        serials.len()
    );
    Ok(())
}

pub fn print_settings(s: &Settings) -> CmdResult {
    let v = serde_json::json!({
        "state_dir": s.state_dir,
        "out_dir": s.out_dir,
        "traefik_out_dir": s.traefik_out_dir,
        "proxy_network": s.proxy_network,
        "listen": s.listen.to_string(),
        "api_name": s.api_names.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "default_ttl": fmt_duration(s.ttls.default),
        "min_ttl": fmt_duration(s.ttls.min),
        "max_ttl": fmt_duration(s.ttls.max),
        "resync_interval": fmt_duration(s.resync_interval),
        "orphan_grace": fmt_duration(s.orphan_grace),
        "orphan_grace": fmt_duration(s.orphan_grace),
        "allow_domain": s.names.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "deny_domain": s.names.deny.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "allow_wildcards": s.names.allow_wildcards,
        "label_prefix": s.label_prefix,
        "log_format": format!("{:?}", s.log_format).to_lowercase(),
        "key_type": s.key_type.to_string(),
        "handshake_timeout": fmt_duration(s.handshake_timeout),
        "header_timeout": fmt_duration(s.header_timeout),
        "body_timeout": fmt_duration(s.body_timeout),
        "max_connections": s.max_connections,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
