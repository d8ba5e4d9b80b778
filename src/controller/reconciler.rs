//! One reconcile pass: build the world, [`plan`], execute, apply the results, write status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::clock::Clock;
use super::config::ControllerConfig;
use super::executor::Executor;
use super::holdings::{Holdings, version};
use super::outputs::OutputDirs;
use super::quiet::{FromQuiet, Quiet};
use super::retry::{FailureKind, error_policy};
use super::status::{StatusRow, digest_of, status_rows, status_rows_in};
use super::store::ContainerStore;
use crate::ca::source::{CertSource, RevokedSerials, bare_serial};
use crate::core::container_set::ContainerSet;
use crate::core::labels::LabelContext;
use crate::core::names::{San, Usage, traefik_client};
use crate::core::plan::{CertSpecLite, DesiredSet, Identity, PartPlan, Plan, Scope, World, plan};
use crate::docker::DockerActions;
use crate::metrics::Metrics;

/// The loop wakes at least this often, even with nothing to do: deadlines are wall-clock
/// times, and a clock that jumps (suspend, NTP step) must be noticed within this interval.
/// After a plan with nothing to do such a wake-up plans nothing unless a deadline passed
/// (see [`Quiet`]).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// The shortest pause between two passes, so a deadline just past never becomes a busy loop.
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// What a pass leaves for the loop.
pub struct Outcome {
    pub next_wake: Instant,
    /// The same version as the last pass's when the pass was skipped (see [`Quiet`]).
    pub desired: DesiredSet,
    /// Something was published under the output directory (the Traefik file may change).
    pub delivered: bool,
}

/// The state that outlives a pass, and the hands that carry a plan out.
pub struct Reconciler<S, A> {
    pub executor: Executor<S, A>,
    pub holdings: Holdings,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// The order each refused identity was refused for: a different one is asked at once.
    refused: BTreeMap<Identity, CertSpecLite>,
    /// What status.json holds (where, and a hash of its rows: a copy of 1,000 entries would
    /// be ~0.5 MiB), so an unchanged status is neither built nor rewritten.
    status_written: Option<(PathBuf, u64)>,
    /// Set after a pass that found nothing to do; see [`Quiet`].
    quiet: Option<Quiet>,
    /// The ledger's copies were swept whole once the containers were listed: after that,
    /// only the containers the store says left are forgotten.
    copies_swept: bool,
    /// What the last look for revoked certificates saw (see [`Reconciler::replace_revoked`]).
    revocations_seen: Option<RevocationsSeen>,
}

/// The revoked serials, the holdings' generation and the time of one look at them together.
struct RevocationsSeen {
    revoked: RevokedSerials,
    generation: u64,
    at: SystemTime,
}

/// The earliest of the times something asked to run again.
#[derive(Default)]
struct Wake(Option<SystemTime>);

impl Wake {
    fn at(&mut self, t: SystemTime) {
        self.0 = Some(self.0.map_or(t, |w| w.min(t)));
    }
}

/// What [`plan`] reads: the containers, the settings and the holdings, at `now`.
fn world_of<'a>(
    holdings: &'a Holdings,
    cfg: &'a ControllerConfig,
    containers: &'a ContainerSet,
    listed: bool,
    ca_version: &'a str,
    traefik_client: &'a CertSpecLite,
    now: SystemTime,
) -> World<'a> {
    World {
        containers,
        label_prefix: &cfg.label_prefix,
        proxy_network: cfg.proxy_network.as_deref(),
        traefik_client: Some(traefik_client),
        current: holdings.currents(),
        failures: &holdings.failures,
        copied: holdings.ledger.copied(),
        ca_version,
        published: holdings.ledger.published(),
        orphaned_since: holdings.ledger.orphaned_since(),
        first_list_done: listed,
        grace: cfg.grace,
        now,
    }
}

/// What the labels are read with under `cfg`.
fn label_context(cfg: &ControllerConfig) -> LabelContext<'_> {
    LabelContext {
        prefix: &cfg.label_prefix,
        names: &cfg.names,
        ttls: &cfg.ttls,
        proxy_network_configured: cfg.proxy_network.is_some(),
        forward_auth: cfg.forward_auth.is_some(),
    }
}

// === impl Reconciler ===

impl<S: CertSource, A: DockerActions> Reconciler<S, A> {
    pub fn new(
        executor: Executor<S, A>,
        holdings: Holdings,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        Self {
            executor,
            holdings,
            metrics,
            clock,
            refused: BTreeMap::new(),
            status_written: None,
            quiet: None,
            revocations_seen: None,
            copies_swept: false,
        }
    }

    /// The settings changed: CA refusals are forgotten, so the next pass asks again (the
    /// policy may have changed), and the next pass plans whatever it finds.
    pub fn settings_changed(&mut self) {
        self.quiet = None;
        for id in std::mem::take(&mut self.refused).keys() {
            self.holdings.failures.remove(id);
        }
    }

    /// Forgets publications whose files are no longer exactly ours, to publish them again.
    pub fn verify_outputs(&mut self, dirs: &OutputDirs) {
        self.quiet = None;
        self.holdings.forget_altered_publications(dirs);
    }

    /// One pass over the whole world. It never sleeps: the outcome says when to run again
    /// (the plan's wake-up, retries, new renewals; at the latest [`MAX_SLEEP`]).
    pub async fn reconcile(
        &mut self,
        cfg: &ControllerConfig,
        store: &mut ContainerStore,
        bundle: &str,
    ) -> Outcome {
        let now = self.clock.now();
        self.replace_revoked(now).await;
        let asking = store.snapshot(&label_context(cfg));
        let mut wake = Wake::default();
        // A plan made from a part: what it covers, and the digest of its status rows before.
        let (mut p, part) = match self.after_quiet(cfg, &asking, store.listed(), bundle, now) {
            Some(FromQuiet::Holds { until, desired }) => {
                let latest = now + MAX_SLEEP;
                let until = until.map_or(latest, |u| u.min(latest));
                return Outcome {
                    next_wake: self.clock.instant_of(until).max(Instant::now() + MIN_SLEEP),
                    desired,
                    delivered: false,
                };
            }
            Some(FromQuiet::Changed(part)) => {
                let PartPlan { plan: p, scope } = *part;
                // The rest's wake-up is the quiet's.
                let before = self.quiet.as_ref().map(|q| {
                    if let Some(t) = q.wakes.next() {
                        wake.at(t);
                    }
                    let o = &q.outcome;
                    let rows = (&o.desired, &o.trust_only[..], &o.refused[..]);
                    digest_of(&status_rows_in(rows, &self.holdings, &scope))
                });
                (p, Some((scope, before)))
            }
            None => {
                self.quiet = None;
                let p = self.plan(cfg, &asking, store.listed(), bundle, now);
                (p, None)
            }
        };
        if let Some(t) = p.next_wake() {
            wake.at(t);
        }
        let retry_now = self.retry_changed_orders(&mut p);
        if retry_now {
            wake.at(now);
        }
        let quiet = p.is_idle() && !retry_now;
        self.log_refusals(&p);

        let results = self
            .executor
            .execute(&p, &self.holdings.held, bundle, &cfg.dirs)
            .await;
        let mut delivered = false;
        for result in results {
            delivered |= self.apply(result, now, &mut wake);
        }
        let (trusted, failed) = self
            .executor
            .copy_trust(&p.trust_copies, bundle, &version("ca", bundle))
            .await;
        self.holdings.ledger.note_copied(trusted);
        if self.executor.attach_all(&p.attaches).await + failed > 0 {
            wake.at(error_policy(FailureKind::Action, 0, now, now));
        }
        self.apply_orphans(cfg, &p, now);
        // Copies of containers gone are forgotten: after one whole sweep (the ledger may name
        // containers that left while certdock was down), those the store saw leave (at 5,000
        // containers a sweep was a quarter of a pass that delivered one copy).
        let departed = store.take_departed();
        if store.listed() {
            if self.copies_swept {
                departed
                    .iter()
                    .for_each(|id| self.holdings.ledger.forget_copied(id));
            } else {
                self.holdings.ledger.retain_copied(|id| store.contains(id));
                self.copies_swept = true;
            }
        }
        let saved = match self.holdings.save_ledger() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot save the delivery ledger");
                false
            }
        };
        self.write_status(cfg, &p, part.as_ref());
        // A quiet is kept only while the ledger and status on disk are this plan's: a quiet
        // wake-up writes neither, and a failed write must be tried again by a later pass.
        let written = saved && self.status_written.is_some();
        let latest = now + MAX_SLEEP;
        let next = wake.0.map_or(latest, |w| w.min(latest));
        let desired = p.desired.clone();
        if part.is_some() {
            match &mut self.quiet {
                Some(q) if !retry_now && written => q.carried_out(&p, &asking),
                _ => self.quiet = None,
            }
        } else if quiet && written {
            let client = traefik_client_spec(cfg);
            self.quiet = Some(Quiet::after(
                &p,
                asking,
                store.listed(),
                bundle,
                client,
                now,
            ));
        }
        Outcome {
            next_wake: self.clock.instant_of(next).max(Instant::now() + MIN_SLEEP),
            desired,
            delivered,
        }
    }

    /// Writes `status.json` when its rows changed. After a plan made from a part, only the
    /// part's rows are compared with theirs before the pass (the rest are the last status's,
    /// which was written): a pass that showed nothing new costs what it changed, not a walk over
    /// every identity (issue 17).
    fn write_status(
        &mut self,
        cfg: &ControllerConfig,
        p: &Plan,
        part: Option<&(Scope, Option<u64>)>,
    ) {
        if let (Some((scope, Some(before))), Some(_)) = (part, &self.status_written) {
            let rows = (&p.desired, &p.trust_only[..], &p.refused[..]);
            if digest_of(&status_rows_in(rows, &self.holdings, scope)) == *before {
                return;
            }
        }
        let rows = status_rows(p, &self.holdings);
        let written = (cfg.state_dir.clone(), digest_of(&rows));
        if self.status_written.as_ref() != Some(&written) {
            let entries: Vec<_> = rows.iter().map(StatusRow::entry).collect();
            match crate::store::status::write(&written.0, &entries) {
                Ok(_) => self.status_written = Some(written),
                Err(e) => {
                    // Not what the last pass wrote: the next one compares every row.
                    self.status_written = None;
                    tracing::warn!(error = %e, "cannot write status.json");
                }
            }
        }
    }

    /// The plan made from the last idle pass (see [`Quiet::plan`]); `None` without one, or
    /// when only a whole plan can tell.
    fn after_quiet(
        &mut self,
        cfg: &ControllerConfig,
        asking: &ContainerSet,
        listed: bool,
        bundle: &str,
        now: SystemTime,
    ) -> Option<FromQuiet> {
        // While a quiet stands, only a pass made from a part stores certificates (what it
        // carried out is then `since`) and a revocation makes one due: otherwise the plan's
        // view of the holdings is current (and a steady wake-up hashes no CA bundle).
        if !self.quiet.as_ref()?.since.is_empty() || self.holdings.currents_stale() {
            self.holdings.refresh_currents(bundle, cfg.rollover_spread);
        }
        let q = self.quiet.as_mut()?;
        let (ca_version, client) = (q.ca_version.clone(), q.client.clone());
        let world = world_of(
            &self.holdings,
            cfg,
            asking,
            listed,
            &ca_version,
            &client,
            now,
        );
        q.plan(&world, listed, bundle)
    }

    /// A certificate the CA has revoked (its serial, one it was renewed from, or its identity)
    /// is due now: its container gets a new key and certificate at this pass, not at renewal.
    /// The held certificates are looked at only when the revoked serials or the holdings
    /// changed since the last look, or the clock went back: with none of these, the answer
    /// could only shrink (a due certificate is no longer looked at), and what it held was
    /// made due then.
    async fn replace_revoked(&mut self, now: SystemTime) {
        let revoked = self.executor.revoked().await;
        let generation = self.holdings.generation();
        if let Some(seen) = &self.revocations_seen
            && Arc::ptr_eq(&seen.revoked, &revoked)
            && seen.generation == generation
            && seen.at <= now
        {
            return;
        }
        self.revocations_seen = Some(RevocationsSeen {
            revoked: revoked.clone(),
            generation,
            at: now,
        });
        if revoked.is_empty() {
            return;
        }
        let due: Vec<Identity> = self
            .holdings
            .held
            .iter()
            .filter(|(_, h)| h.renew_at > now && revoked.contains(bare_serial(&h.serial)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            tracing::warn!(cert = %id, "certificate revoked; replacing it now");
            self.holdings.due_now(&id, now);
            // Its wake-up is now: a quiet plans it again from its part.
            if let Some(q) = &mut self.quiet {
                q.wakes.replace([&id], &[(id.clone(), now)]);
            }
        }
    }

    fn plan(
        &mut self,
        cfg: &ControllerConfig,
        containers: &ContainerSet,
        listed: bool,
        bundle: &str,
        now: SystemTime,
    ) -> Plan {
        // Brought up to date first (it may recompute), then read beside the other holdings.
        self.holdings.refresh_currents(bundle, cfg.rollover_spread);
        let ca_version = version("ca", bundle);
        let traefik_client = traefik_client_spec(cfg);
        let world = world_of(
            &self.holdings,
            cfg,
            containers,
            listed,
            &ca_version,
            &traefik_client,
            now,
        );
        let p = plan(&world);
        tracing::debug!(
            containers = containers.len(),
            work = p.work.len(),
            attaches = p.attaches.len(),
            refused = p.refused.len(),
            "reconcile"
        );
        p
    }
}

/// certdock's own client certificate for Traefik, with the current default lifetime.
fn traefik_client_spec(cfg: &ControllerConfig) -> CertSpecLite {
    let san = San::parse(traefik_client::CN)
        .unwrap_or_else(|e| unreachable!("the literal {:?}: {e}", traefik_client::CN));
    CertSpecLite {
        sans: vec![san],
        groups: Default::default(),
        usage: Usage::CLIENT,
        ttl: cfg.ttls.default,
    }
}

mod apply;

#[cfg(test)]
#[path = "reconciler_tests.rs"]
mod tests;
