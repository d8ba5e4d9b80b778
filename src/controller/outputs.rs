//! The files proxies read: `ca.pem`, `caddy/`, `traefik/certdock.yml`, and `certs/NAME/`.
//! Every file is rendered first and written only when its bytes differ, atomically.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::ca::pem::{cert_to_pem, certs_from_pem, parse_cert};
use crate::core::plan::{DesiredSet, Identity};
use crate::delivery::bundle::{Bundle, publish_dir, remove_dir};
use crate::proxy::caddy::render_snippet;
use crate::proxy::traefik::{CertFiles, ForwardAuth, TlsOptionsBase, TraefikModel, render};
use crate::store::atomic::{Mode, create_dir, write_if_changed};

/// Where outputs go, on this host and as the proxy sees them.
#[derive(Debug, Clone)]
pub struct OutputDirs {
    pub out: PathBuf,
    /// The output directory as Traefik (and Caddy) mount it.
    pub proxy_view: PathBuf,
}

impl OutputDirs {
    /// Host directory of an identity's published files.
    pub fn published_dir(&self, id: &Identity) -> PathBuf {
        self.out.join(id.out_dir())
    }

    fn proxy_path(&self, rel: &str) -> String {
        self.proxy_view.join(rel).to_string_lossy().into_owned()
    }
}

/// The CA bundle's certificates one by one, root first, with their file stems: `root`, then
/// `intermediate-<serial prefix>`. The one place CA files are named.
pub fn ca_parts(bundle: &str) -> Vec<(String, String)> {
    certs_from_pem("CA bundle", bundle)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, der)| {
            let serial = parse_cert("CA", der)
                .map(|c| hex::encode(c.raw_serial()))
                .unwrap_or_default();
            let stem = if i == 0 {
                "root".to_string()
            } else {
                format!("intermediate-{}", &serial[..serial.len().min(16)])
            };
            (stem, cert_to_pem(der))
        })
        .collect()
}

pub fn publish(dirs: &OutputDirs, id: &Identity, bundle: &Bundle) -> io::Result<()> {
    create_dir(&dirs.out.join("certs"), 0o755)?;
    publish_dir(&dirs.published_dir(id), bundle, None)
}

pub fn unpublish(dirs: &OutputDirs, id: &Identity) -> io::Result<()> {
    remove_dir(&dirs.published_dir(id))
}

/// Writes `ca.pem` and the Caddy files: the snippet names one CA file per certificate, because
/// Caddy 2.6 reads only the first certificate of a bundle. Returns whether anything changed.
pub fn write_ca_files(dirs: &OutputDirs, bundle: &str) -> io::Result<bool> {
    let ca_parts = ca_parts(bundle);
    create_dir(&dirs.out, 0o755)?;
    let ca_pem: String = ca_parts.iter().map(|(_, pem)| pem.as_str()).collect();
    let mut changed = write_if_changed(&dirs.out.join("ca.pem"), ca_pem.as_bytes(), Mode::Public)?;
    let caddy_dir = dirs.out.join("caddy");
    create_dir(&caddy_dir, 0o755)?;
    let mut caddy_files = Vec::new();
    for (stem, pem) in &ca_parts {
        let file = format!("ca-{stem}.pem");
        changed |= write_if_changed(&caddy_dir.join(&file), pem.as_bytes(), Mode::Public)?;
        caddy_files.push(dirs.proxy_path(&format!("caddy/{file}")));
    }
    let snippet = render_snippet(&caddy_files).map_err(io::Error::other)?;
    changed |= write_if_changed(
        &caddy_dir.join("mtls.caddy"),
        snippet.as_bytes(),
        Mode::Public,
    )?;
    // Files of intermediates that expired go only after the snippet stopped naming them.
    remove_stale(
        &caddy_dir,
        "ca-",
        ".pem",
        ca_parts
            .iter()
            .map(|(s, _)| format!("ca-{s}.pem"))
            .collect(),
    )?;
    Ok(changed)
}

/// What the Traefik configuration is made of.
pub struct ProxyInputs<'a> {
    /// The CA bundle to trust now.
    pub bundle: &'a str,
    /// The user's `[traefik.options]`.
    pub options: &'a TlsOptionsBase,
    pub desired: &'a DesiredSet,
    /// Each published identity's file version: it goes into the YAML's revision, because
    /// Traefik re-reads certificate files only when its directory changes.
    pub versions: &'a BTreeMap<Identity, String>,
    /// The forward-auth decider's base URL, when this process serves one.
    pub forward_auth: Option<&'a str>,
}

/// Writes the Traefik configuration when its bytes change; returns whether it did.
pub fn write_proxy_files(dirs: &OutputDirs, inputs: &ProxyInputs<'_>) -> io::Result<bool> {
    let ProxyInputs {
        bundle,
        options: base_options,
        desired,
        versions,
        forward_auth,
    } = *inputs;
    let forward_auth = forward_auths(desired, forward_auth)?;
    let ca_pem: String = ca_parts(bundle)
        .iter()
        .map(|(_, pem)| pem.as_str())
        .collect();
    let mut certificates = Vec::new();
    let mut revision = ring::digest::Context::new(&ring::digest::SHA256);
    revision.update(ca_pem.as_bytes());
    for (id, d) in desired {
        if d.traefik_hosts
            && let Some(v) = versions.get(id)
        {
            let rel = id.out_dir();
            certificates.push(CertFiles {
                cert_file: dirs.proxy_path(&format!("{rel}/fullchain.pem")),
                key_file: dirs.proxy_path(&format!("{rel}/key.pem")),
            });
            revision.update(v.as_bytes());
        }
    }
    let transport_client = versions.get(&Identity::TraefikClient).map(|v| {
        revision.update(v.as_bytes());
        let rel = Identity::TraefikClient.out_dir();
        CertFiles {
            cert_file: dirs.proxy_path(&format!("{rel}/fullchain.pem")),
            key_file: dirs.proxy_path(&format!("{rel}/key.pem")),
        }
    });
    let model = TraefikModel {
        ca_files: vec![dirs.proxy_path("ca.pem")],
        base_options: base_options.clone(),
        certificates,
        transport_client,
        forward_auth,
        revision: hex::encode(revision.finish()),
    };
    let yaml = render(&model).map_err(io::Error::other)?;
    let traefik_dir = dirs.out.join("traefik");
    create_dir(&traefik_dir, 0o755)?;
    write_if_changed(
        &traefik_dir.join("certdock.yml"),
        yaml.as_bytes(),
        Mode::Public,
    )
}

/// Writes the CA files when they changed, logging the outcome: on failure the previous ones
/// stay in place.
pub fn refresh_ca_files(dirs: &OutputDirs, bundle: &str) {
    if bundle.is_empty() {
        return;
    }
    match write_ca_files(dirs, bundle) {
        Ok(true) => {
            tracing::info!(file = %dirs.out.join("ca.pem").display(), "wrote the CA bundle")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot write the CA files; the previous ones stay in place")
        }
    }
}

/// Writes the Traefik file when it changed, logging the outcome. Returns whether it wrote.
pub fn refresh_proxy_files(dirs: &OutputDirs, inputs: &ProxyInputs<'_>) -> bool {
    match write_proxy_files(dirs, inputs) {
        Ok(written) => {
            if written {
                tracing::info!(file = %dirs.out.join("traefik/certdock.yml").display(), "wrote proxy configuration");
            }
            written
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot write proxy files; the previous ones stay in place");
            false
        }
    }
}

/// One forward-auth middleware per server identity with an allow list, asking the decider at
/// `base` (this host's HTTPS API). Without a decider an allow list cannot be enforced: the
/// configuration is refused (the previous file stays), never written open.
fn forward_auths(desired: &DesiredSet, base: Option<&str>) -> io::Result<Vec<ForwardAuth>> {
    desired
        .iter()
        .filter(|(_, d)| d.allow.is_some())
        .map(|(id, _)| {
            let server = id.status_name();
            let base = base.ok_or_else(|| {
                io::Error::other(format!(
                    "{server} has an allow list but this process serves no forward-auth decider"
                ))
            })?;
            Ok(ForwardAuth {
                address: format!("{}/v1/forward-auth/{server}", base.trim_end_matches('/')),
                server,
            })
        })
        .collect()
}

/// Removes files `prefix*suffix` in `dir` that are not in `keep` (CA files of expired intermediates).
fn remove_stale(dir: &Path, prefix: &str, suffix: &str, keep: Vec<String>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(suffix) && !keep.contains(&name) {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Component;

    use super::*;
    use crate::core::names::CertName;

    fn dirs() -> OutputDirs {
        OutputDirs {
            out: PathBuf::from("/srv/certdock/out"),
            proxy_view: PathBuf::from("/certdock"),
        }
    }

    #[test]
    fn hostile_certificate_names_never_leave_the_certs_directory() {
        let long = "a".repeat(300);
        let hostile = [
            "../../etc",
            "..",
            ".",
            "/etc",
            "a/b",
            "a/../../b",
            "a\0b",
            "a\\..\\b",
            "web/",
            "bücher",
            "~root",
            "$HOME",
            "",
            " ",
            long.as_str(),
        ];
        for raw in hostile {
            assert!(CertName::parse(raw).is_err(), "{raw:?} accepted");
        }
        let certs = dirs().out.join("certs");
        for raw in [
            "web",
            "web.",
            "a.b-c",
            "1.2.3.4",
            "WEB.Internal",
            &"x".repeat(64),
        ] {
            let name = CertName::parse(raw).unwrap();
            let dir = dirs().published_dir(&Identity::Named(name.clone()));
            assert_eq!(dir.parent(), Some(certs.as_path()), "{raw:?}");
            assert_eq!(dir.file_name().unwrap(), name.as_str());
            assert!(
                dir.components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
                "{}",
                dir.display()
            );
        }
    }

    #[test]
    fn certdocks_own_client_certificate_lies_outside_certs() {
        let d = dirs();
        assert_eq!(
            d.published_dir(&Identity::TraefikClient),
            d.out.join("traefik-client")
        );
        // No container can take the name: it is not under certs/.
        let name = CertName::parse("traefik-client").unwrap();
        assert_ne!(
            d.published_dir(&Identity::Named(name)),
            d.published_dir(&Identity::TraefikClient)
        );
    }
}
