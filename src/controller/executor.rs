//! Carries out a plan: issue through the CA, publish files, copy into containers, signal,
//! attach. It decides nothing; every outcome goes back to the reconciler as data.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};

use super::holdings::{Held, version};
use super::outputs::{OutputDirs, publish};
use crate::ca::source::{CertSource, LeafOrder, SourceError};
use crate::core::labels::Reload;
use crate::core::plan::{Attach, CertPlan, CertSpecLite, Copy, Identity, Plan};
use crate::delivery::bundle::Bundle;
use crate::docker::{DockerActions, Upload};
use crate::store::atomic::Mode;

/// How many certificates are worked on at once (Docker calls and signing overlap).
const PARALLEL: usize = 8;

/// The outcome of one [`CertPlan`].
pub struct WorkResult {
    pub id: Identity,
    /// What was asked of the CA, when anything was.
    pub order: Option<CertSpecLite>,
    pub issued: Option<Held>,
    pub issue_error: Option<SourceError>,
    /// Version now published under the output directory.
    pub published: Option<String>,
    /// (container id, version) now copied.
    pub copied: Vec<(String, String)>,
    /// Deliveries or signals that failed (retried by the next pass).
    pub failed_actions: usize,
    /// The last such failure, for `status`.
    pub action_error: Option<String>,
}

/// The hands of the loop: a CA and a Docker engine, both given from outside.
pub struct Executor<S, A> {
    source: Arc<S>,
    actions: Arc<A>,
}

impl<S: CertSource, A: DockerActions> Executor<S, A> {
    pub fn new(source: Arc<S>, actions: Arc<A>) -> Self {
        Self { source, actions }
    }

    /// Every serial the CA has revoked (see [`CertSource::revoked`]).
    pub async fn revoked(&self) -> crate::ca::source::RevokedSerials {
        self.source.revoked().await
    }

    /// Carries out every [`CertPlan`]; `dirs` are read per call, so a reload reaches them.
    pub async fn execute(
        &self,
        plan: &Plan,
        held: &BTreeMap<Identity, Held>,
        bundle: &str,
        dirs: &OutputDirs,
    ) -> Vec<WorkResult> {
        // Futures made first and then streamed (they start only when polled): a closure in the
        // stream would make the future not `Send` for every lifetime, and the loop unspawnable.
        let work: Vec<_> = plan
            .work
            .iter()
            .map(|w| self.run_one(w, held.get(&w.id).cloned(), bundle, dirs))
            .collect();
        stream::iter(work)
            .buffer_unordered(PARALLEL)
            .collect()
            .await
    }

    async fn run_one(
        &self,
        work: &CertPlan,
        current: Option<Held>,
        bundle: &str,
        dirs: &OutputDirs,
    ) -> WorkResult {
        let mut result = WorkResult {
            id: work.id.clone(),
            order: work.issue.as_ref().map(|(spec, _)| spec.clone()),
            issued: None,
            issue_error: None,
            published: None,
            copied: Vec::new(),
            failed_actions: 0,
            action_error: None,
        };
        let mut cert = current;
        if let Some((spec, reason)) = &work.issue {
            let order = LeafOrder {
                name: work.id.cert_name(),
                sans: spec.sans.clone(),
                usage: spec.usage,
                groups: spec.groups.clone(),
                ttl: spec.ttl,
                internal: work.id == Identity::TraefikClient,
            };
            tracing::debug!(cert = %work.id, %reason, "issuing");
            match self.source.issue(&order).await {
                Ok(issued) => match Held::from_issued(&issued) {
                    Some(h) => {
                        cert = Some(h.clone());
                        result.issued = Some(h);
                    }
                    None => {
                        result.issue_error = Some(SourceError::Unavailable(
                            "the CA returned an unreadable certificate".into(),
                        ))
                    }
                },
                Err(e) => result.issue_error = Some(e),
            }
        }
        // With no certificate at all there is nothing to deliver; with an old one, deliver it
        // where it is missing (a failed renewal must not leave a new container empty-handed).
        let Some(cert) = cert else { return result };
        let bundle_files = cert.bundle(bundle);
        let v = version(&cert.serial, bundle);
        if work.publish {
            match publish(dirs, &work.id, &bundle_files) {
                Ok(()) => {
                    result.published = Some(v.clone());
                    for (container, reload) in &work.publish_reloads {
                        if self.reload(container, reload).await.is_err() {
                            result.failed_actions += 1;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(cert = %work.id, error = %e, "cannot publish certificate files");
                    result.failed_actions += 1;
                    result.action_error = Some(format!(
                        "cannot write {}: {e}",
                        dirs.published_dir(&work.id).display()
                    ));
                }
            }
        }
        for copy in &work.copies {
            match self.copy(copy, &bundle_files, &v).await {
                Ok(()) => result.copied.push((copy.container_id.clone(), v.clone())),
                Err(reason) => {
                    result.failed_actions += 1;
                    result.action_error = Some(reason.unwrap_or_else(|| {
                        format!(
                            "delivery to container {} failed (see the log); retrying",
                            copy.container_name
                        )
                    }));
                }
            }
        }
        result
    }

    async fn copy(&self, copy: &Copy, bundle: &Bundle, v: &str) -> Result<(), Option<String>> {
        let mut files: Vec<(String, Vec<u8>, u32)> = bundle
            .files()
            .into_iter()
            .map(|(n, c, m)| (n.to_string(), c, m.bits()))
            .collect();
        // cert.pem last: on a first delivery its link appears after every other file's, so an
        // entrypoint that waits for cert.pem (README) finds the whole set.
        files.sort_by_key(|(n, _, _)| n == "cert.pem");
        self.upload(copy, &files, v, &bundle.version).await
    }

    /// `usage=none`: only `ca.pem` into each container, versioned `v`. Returns the
    /// (container id, version) pairs delivered and how many failed.
    pub async fn copy_trust(
        &self,
        copies: &[Copy],
        ca_pem: &str,
        v: &str,
    ) -> (Vec<(String, String)>, usize) {
        let files = vec![(
            "ca.pem".to_string(),
            ca_pem.as_bytes().to_vec(),
            Mode::Public.bits(),
        )];
        let mut done = Vec::new();
        let mut failed = 0;
        for copy in copies {
            match self.upload(copy, &files, v, "ca.pem only").await {
                Ok(()) => done.push((copy.container_id.clone(), v.to_string())),
                Err(_) => failed += 1,
            }
        }
        (done, failed)
    }

    async fn upload(
        &self,
        copy: &Copy,
        files: &[(String, Vec<u8>, u32)],
        v: &str,
        what: &str,
    ) -> Result<(), Option<String>> {
        let upload = Upload {
            container_id: &copy.container_id,
            dir: copy.path.as_str(),
            files,
            uid: copy.owner.uid,
            gid: copy.owner.gid,
            version: v,
            first: copy.first,
        };
        if let Err(e) = self.actions.upload(upload).await {
            if !e.is_not_found() {
                tracing::warn!(container = %copy.container_name, error = %e, "cannot copy the certificate into the container");
            }
            // Only the container's own setup can fix these: status says what to change.
            return Err(e.is_the_containers_setup().then(|| e.to_string()));
        }
        tracing::info!(container = %copy.container_name, path = %copy.path, serial = %what, "delivered");
        match &copy.reload {
            Some(r) if copy.running => self
                .reload(&copy.container_id, r)
                .await
                .map_err(|()| None)?,
            // Planned while only created: `docker run` may have started it since (the upload
            // waited for the start's lock), and then its process runs without having read these
            // files. A signal reaches it; a container still not running answers 409, which is
            // fine. A restart would start a created container, so that one waits.
            Some(Reload::Signal(s)) => {
                match self.actions.signal(&copy.container_id, s.name()).await {
                    Ok(()) => {
                        tracing::info!(container = %copy.container_id, reload = %s.name(), "reload sent (started during the copy)")
                    }
                    Err(e) if e.status_code() == Some(409) => {}
                    Err(e) => {
                        tracing::warn!(container = %copy.container_id, error = %e, "reload failed");
                        return Err(None);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn reload(&self, container_id: &str, reload: &Reload) -> Result<(), ()> {
        let result = match reload {
            Reload::Signal(s) => self.actions.signal(container_id, s.name()).await,
            Reload::Restart => self.actions.restart(container_id).await,
        };
        match result {
            Ok(()) => {
                tracing::info!(container = %container_id, %reload, "reload sent");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(container = %container_id, %reload, error = %e, "reload failed");
                Err(())
            }
        }
    }

    /// Attaches containers to the proxy network. Returns how many attempts failed.
    pub async fn attach_all(&self, attaches: &[Attach]) -> usize {
        let mut failed = 0;
        for a in attaches {
            let aliases = std::slice::from_ref(&a.alias);
            match self
                .actions
                .connect_network(&a.network, &a.container_id, aliases)
                .await
            {
                Ok(()) => {
                    tracing::info!(container = %a.container_id, network = %a.network, alias = %a.alias, "attached")
                }
                Err(e) => {
                    tracing::warn!(container = %a.container_id, network = %a.network, error = %e, "cannot attach to the proxy network");
                    failed += 1;
                }
            }
        }
        failed
    }
}
