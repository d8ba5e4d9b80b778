//! Carries out a plan: issue through the CA, publish files, copy into containers, signal,
//! attach. It decides nothing; every outcome goes back to the reconciler as data.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use tokio::sync::Mutex;

use super::holdings::{Held, version};
use super::outputs::{OutputDirs, publish};
use crate::ca::source::{CertSource, LeafOrder, SourceError};
use crate::core::labels::Reload;
use crate::core::plan::{Attach, CertPlan, Copy, Identity, Plan};
use crate::delivery::bundle::Bundle;
use crate::docker::{self, Docker};

/// How many certificates are worked on at once (Docker calls and signing overlap).
const PARALLEL: usize = 8;

/// The outcome of one [`CertPlan`].
pub struct WorkResult {
    pub id: Identity,
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

pub struct Executor<S> {
    source: Arc<S>,
    dirs: OutputDirs,
    /// A Docker client for actions, made on first use and dropped after a transport failure.
    docker: Mutex<Option<Docker>>,
}

impl<S: CertSource> Executor<S> {
    pub fn new(source: Arc<S>, dirs: OutputDirs) -> Self {
        Self {
            source,
            dirs,
            docker: Mutex::new(None),
        }
    }

    async fn docker(&self) -> Result<Docker, docker::DockerError> {
        let mut guard = self.docker.lock().await;
        if let Some(d) = guard.as_ref() {
            return Ok(d.clone());
        }
        let d = docker::connect().await?;
        *guard = Some(d.clone());
        Ok(d)
    }

    async fn docker_failed(&self, e: &docker::DockerError) {
        if e.is_transient() {
            *self.docker.lock().await = None;
        }
    }

    pub async fn execute(
        &self,
        plan: &Plan,
        held: &BTreeMap<Identity, Held>,
        bundle: &str,
    ) -> Vec<WorkResult> {
        stream::iter(plan.work.iter())
            .map(|w| self.run_one(w, held.get(&w.id).cloned(), bundle))
            .buffer_unordered(PARALLEL)
            .collect()
            .await
    }

    async fn run_one(&self, work: &CertPlan, current: Option<Held>, bundle: &str) -> WorkResult {
        let mut result = WorkResult {
            id: work.id.clone(),
            issued: None,
            issue_error: None,
            published: None,
            copied: Vec::new(),
            failed_actions: 0,
            action_error: None,
        };
        let mut cert = current;
        if let Some((spec, reason)) = &work.issue {
            let name = match &work.id {
                Identity::Named(n) => n.clone(),
                Identity::TraefikClient => {
                    crate::core::names::CertName::parse("traefik.certdock").expect("literal")
                }
            };
            let order = LeafOrder {
                name,
                sans: spec.sans.clone(),
                usage: spec.usage,
                groups: Default::default(),
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
            match publish(&self.dirs, &work.id, &bundle_files) {
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
                        self.dirs.published_dir(&work.id).display()
                    ));
                }
            }
        }
        for copy in &work.copies {
            match self.copy(copy, &bundle_files, &v).await {
                Ok(()) => result.copied.push((copy.container_id.clone(), v.clone())),
                Err(()) => {
                    result.failed_actions += 1;
                    result.action_error = Some(format!(
                        "delivery to container {} failed (see the log); retrying",
                        copy.container_name
                    ));
                }
            }
        }
        result
    }

    async fn copy(&self, copy: &Copy, bundle: &Bundle, v: &str) -> Result<(), ()> {
        let docker = self
            .docker()
            .await
            .map_err(|e| tracing::warn!(error = %e, "Docker unreachable"))?;
        let files: Vec<(String, Vec<u8>, u32)> = bundle
            .files()
            .into_iter()
            .map(|(n, c, m)| (n.to_string(), c, m.bits()))
            .collect();
        if let Err(e) = docker::upload_files(
            &docker,
            &copy.container_id,
            copy.path.as_str(),
            &files,
            copy.owner.uid,
            copy.owner.gid,
            v,
        )
        .await
        {
            if !e.is_not_found() {
                tracing::warn!(container = %copy.container_name, error = %e, "cannot copy the certificate into the container");
            }
            self.docker_failed(&e).await;
            return Err(());
        }
        tracing::info!(container = %copy.container_name, path = %copy.path, serial = %bundle.version, "delivered");
        if copy.running
            && let Some(r) = &copy.reload
        {
            self.reload(&copy.container_id, r).await?;
        }
        Ok(())
    }

    async fn reload(&self, container_id: &str, reload: &Reload) -> Result<(), ()> {
        let docker = self
            .docker()
            .await
            .map_err(|e| tracing::warn!(error = %e, "Docker unreachable"))?;
        let result = match reload {
            Reload::Signal(s) => docker::send_signal(&docker, container_id, s.name()).await,
            Reload::Restart => docker::restart(&docker, container_id).await,
        };
        match result {
            Ok(()) => {
                tracing::info!(container = %container_id, %reload, "reload sent");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(container = %container_id, %reload, error = %e, "reload failed");
                self.docker_failed(&e).await;
                Err(())
            }
        }
    }

    /// Attaches containers to the proxy network. Returns how many attempts failed.
    pub async fn attach_all(&self, attaches: &[Attach]) -> usize {
        let mut failed = 0;
        for a in attaches {
            let docker = match self.docker().await {
                Ok(d) => d,
                Err(_) => return attaches.len(),
            };
            match docker::connect_network(
                &docker,
                &a.network,
                &a.container_id,
                std::slice::from_ref(&a.alias),
            )
            .await
            {
                Ok(()) => {
                    tracing::info!(container = %a.container_id, network = %a.network, alias = %a.alias, "attached")
                }
                Err(e) => {
                    tracing::warn!(container = %a.container_id, network = %a.network, error = %e, "cannot attach to the proxy network");
                    self.docker_failed(&e).await;
                    failed += 1;
                }
            }
        }
        failed
    }
}
