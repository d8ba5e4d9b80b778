//! The one reconcile loop: Docker events and timers wake it; [`plan`] decides; the executor does.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::time::{Instant, sleep_until};

use super::executor::{Executor, WorkResult};
use super::file_watch::{FileChange, watch_files};
use super::holdings::{Holdings, file_key, identity_of};
use super::outputs::{OutputDirs, write_ca_files, write_proxy_files};
use super::status::status_entries;
use super::store::ContainerStore;
use crate::ca::pem::{certs_from_pem, parse_cert};
use crate::ca::source::CertSource;
use crate::core::labels::LabelContext;
use crate::core::names::{San, Usage};
use crate::core::plan::{CertSpecLite, Identity, World, plan};
use crate::core::policy::{NamePolicy, TtlPolicy};
use crate::core::renew::retry_after;
use crate::docker::{self, WatchConfig, WatchEvent};
use crate::metrics::Metrics;
use crate::proxy::traefik::TlsOptionsBase;
use time::OffsetDateTime;

/// Everything the controller is told at start.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub state_dir: std::path::PathBuf,
    pub dirs: OutputDirs,
    pub label_prefix: String,
    pub names: NamePolicy,
    pub ttls: TtlPolicy,
    pub proxy_network: Option<String>,
    pub resync: Duration,
    pub traefik_options: TlsOptionsBase,
    /// How long files of a certificate no container wants stay before removal.
    pub grace: Duration,
}

/// The config file and how to turn it into a new configuration (flags and environment still
/// take precedence over the file, as at start).
pub struct Reloadable {
    pub path: std::path::PathBuf,
    pub load: Box<dyn Fn() -> Result<ControllerConfig, String> + Send + Sync>,
}

/// Quiet time after an event before reconciling: lets a `create`+`start` pair land together.
const RECONCILE_QUIET: Duration = Duration::from_millis(5);
/// Proxy files wait for a burst to end (quiet), but never longer than the cap after its start,
/// so 20 containers started together cause one or two Traefik reloads, not twenty. The quiet
/// time is longer than the gap between two `docker run`s of a script or Compose (~0.3 s here,
/// see BENCHMARKS.md) and short enough that the last container of a burst is in Traefik's
/// configuration within a second of its start.
const FLUSH_QUIET: Duration = Duration::from_millis(500);
const FLUSH_MAX: Duration = Duration::from_secs(2);
/// The loop plans at least this often, even with nothing to do: deadlines are wall-clock
/// times, and a clock that jumps (suspend, NTP step) must be noticed within this interval.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Pause after a file event before checking outputs (our own writes cause events too).
const FILE_QUIET: Duration = Duration::from_millis(200);
/// After a failed Docker action, try again this soon even if nothing else happens.
const ACTION_RETRY: Duration = Duration::from_secs(2);

fn ca_parts(bundle: &str) -> Vec<(String, String)> {
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
            (stem, crate::ca::pem::cert_to_pem(der))
        })
        .collect()
}

/// Runs the controller until `shutdown` resolves.
pub async fn run<S: CertSource>(
    mut cfg: ControllerConfig,
    source: Arc<S>,
    metrics: Arc<Metrics>,
    reload: Option<Reloadable>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut holdings = Holdings::load(&cfg.state_dir)?;
    for (id, h) in &holdings.held {
        metrics.set_certificate(&id.to_string(), OffsetDateTime::from(h.not_after));
    }
    let (_file_watch, mut file_changes) =
        watch_files(&cfg.dirs.out, reload.as_ref().map(|r| r.path.as_path()))
            .map_err(std::io::Error::other)?;
    let mut verify_outputs = true;
    let mut store = ContainerStore::default();
    let executor = Executor::new(source.clone(), cfg.dirs.clone());
    let events = docker::watch(
        docker::connect,
        WatchConfig {
            label_prefix: cfg.label_prefix.clone(),
            resync: cfg.resync,
        },
    );
    tokio::pin!(events);
    tokio::pin!(shutdown);

    let traefik_client = CertSpecLite {
        sans: vec![San::parse("traefik.certdock").expect("literal")],
        usage: Usage::CLIENT,
        ttl: cfg.ttls.default,
    };
    let mut bundle = String::new();
    let mut reconcile_at = Some(Instant::now());
    let mut flush_at: Option<Instant> = Some(Instant::now());
    let mut burst_started: Option<Instant> = None;
    let mut last_plan_desired = BTreeMap::new();
    tracing::info!(out = %cfg.dirs.out.display(), "controller started");

    loop {
        let wake = [reconcile_at, flush_at].into_iter().flatten().min();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(ev) = events.next() => {
                match &ev {
                    WatchEvent::InitDone => metrics.resyncs.inc(),
                    WatchEvent::Upsert(_) | WatchEvent::Remove(_) => metrics.docker_events.inc(),
                    _ => 0,
                };
                if store.apply(ev) {
                    let soon = Instant::now() + RECONCILE_QUIET;
                    reconcile_at = Some(reconcile_at.map_or(soon, |t| t.min(soon)));
                }
            }
            Some(change) = file_changes.recv() => {
                match change {
                    FileChange::Outputs => verify_outputs = true,
                    FileChange::Config => match reload.as_ref().map(|r| (r.load)()) {
                        Some(Ok(new)) => {
                            tracing::info!("settings reloaded from the config file");
                            cfg = new;
                        }
                        Some(Err(e)) => tracing::error!(error = %e, "the changed config file is refused; keeping the running settings"),
                        None => {}
                    },
                }
                // Our own writes land here too: look after a short pause, once per storm.
                let soon = Instant::now() + FILE_QUIET;
                reconcile_at = Some(reconcile_at.map_or(soon, |t| t.min(soon)));
                // A flush already pending rewrites an altered file anyway; pulling it earlier
                // would defeat the burst debounce, since every publish under OUT/certs/ is a
                // file event (it made one Traefik reload per container).
                flush_at = Some(flush_at.unwrap_or(soon));
            }
            _ = async { match wake { Some(w) => sleep_until(w).await, None => std::future::pending().await } } => {
                let now = Instant::now();
                if reconcile_at.is_some_and(|t| t <= now) {
                    match source.bundle().await {
                        Ok(b) => bundle = b,
                        Err(e) => tracing::warn!(error = %e, "cannot refresh the CA bundle; keeping the last one"),
                    }
                    // The CA files go out at once (before any delivery that relies on them);
                    // only the Traefik file waits for the burst to settle.
                    write_ca(&cfg, &bundle);
                    if std::mem::take(&mut verify_outputs) {
                        verify_published(&cfg, &mut holdings);
                    }
                    let outcome = reconcile_once(&cfg, &metrics, &executor, &mut holdings, &store, &bundle, &traefik_client).await;
                    reconcile_at = outcome.next_wake;
                    if outcome.desired != last_plan_desired || outcome.delivered {
                        last_plan_desired = outcome.desired;
                        let first = *burst_started.get_or_insert(now);
                        flush_at = Some((now + FLUSH_QUIET).min(first + FLUSH_MAX));
                    }
                }
                if flush_at.is_some_and(|t| t <= Instant::now()) {
                    flush_at = None;
                    burst_started = None;
                    if !bundle.is_empty() && flush(&cfg, &holdings, &last_plan_desired, &bundle) {
                        metrics.proxy_config_written("traefik");
                    }
                }
            }
        }
    }
    tracing::info!("controller stopped");
    Ok(())
}

struct Outcome {
    next_wake: Option<Instant>,
    desired: BTreeMap<Identity, crate::core::plan::Desired>,
    delivered: bool,
}

fn to_instant(t: SystemTime) -> Instant {
    let now = SystemTime::now();
    Instant::now() + t.duration_since(now).unwrap_or_default()
}

async fn reconcile_once<S: CertSource>(
    cfg: &ControllerConfig,
    metrics: &Metrics,
    executor: &Executor<S>,
    holdings: &mut Holdings,
    store: &ContainerStore,
    bundle: &str,
    traefik_client: &CertSpecLite,
) -> Outcome {
    let now = SystemTime::now();
    let containers = store.snapshot();
    let current: BTreeMap<_, _> = holdings
        .held
        .iter()
        .map(|(id, h)| (id.clone(), h.current(bundle)))
        .collect();
    let published: BTreeMap<_, _> = holdings
        .ledger
        .published
        .iter()
        .filter_map(|(k, v)| Some((identity_of(k)?, v.clone())))
        .collect();
    let orphaned: BTreeMap<_, _> = holdings
        .ledger
        .orphaned_since
        .iter()
        .filter_map(|(k, v)| {
            Some((
                identity_of(k)?,
                SystemTime::UNIX_EPOCH + Duration::from_secs(*v),
            ))
        })
        .collect();
    let world = World {
        containers: &containers,
        labels: LabelContext {
            prefix: &cfg.label_prefix,
            names: &cfg.names,
            ttls: &cfg.ttls,
            proxy_network_configured: cfg.proxy_network.is_some(),
        },
        proxy_network: cfg.proxy_network.as_deref(),
        traefik_client: Some(traefik_client),
        current: &current,
        failures: &holdings.failures,
        copied: &holdings.ledger.copied,
        published: &published,
        orphaned_since: &orphaned,
        first_list_done: store.listed(),
        grace: cfg.grace,
        now,
    };
    let p = plan(&world);
    tracing::debug!(
        containers = containers.len(),
        work = p.work.len(),
        attaches = p.attaches.len(),
        refused = p.refused.len(),
        "reconcile"
    );
    // Refusals are logged when they first appear, not on every pass.
    for r in &p.refused {
        if holdings
            .refusals_logged
            .insert((r.container_id.clone(), r.error.clone()))
        {
            tracing::warn!(container = %r.container_name, error = %r.error, "container refused");
        }
    }
    holdings.refusals_logged.retain(|(id, e)| {
        p.refused
            .iter()
            .any(|r| &r.container_id == id && &r.error == e)
    });

    let results = executor.execute(&p, &holdings.held, bundle).await;
    let mut retry_soon = false;
    let mut delivered = false;
    for WorkResult {
        id,
        issued,
        issue_error,
        published,
        copied,
        failed_actions,
        action_error,
    } in results
    {
        match (issued, issue_error) {
            (Some(held), _) => {
                tracing::info!(cert = %id, serial = %held.serial, "issued");
                if holdings.held.contains_key(&id) {
                    metrics.renewed("controller");
                } else {
                    metrics.issued("controller");
                }
                metrics.set_certificate(&id.to_string(), OffsetDateTime::from(held.not_after));
                if let Err(e) = holdings.store(&id, held) {
                    tracing::error!(cert = %id, error = %e, "cannot store the new certificate");
                }
                holdings.failures.remove(&id);
            }
            (None, Some(err)) => {
                let attempts = holdings.failures.get(&id).map_or(0, |f| f.attempts + 1);
                let not_after = holdings.held.get(&id).map_or(now, |h| h.not_after);
                let retry_at = retry_after(attempts, now, not_after);
                tracing::warn!(cert = %id, error = %err, attempts = attempts + 1, "issuance failed; retrying later");
                metrics.error(if err.is_transient() {
                    "ca_unavailable"
                } else {
                    "ca_refused"
                });
                holdings.failures.insert(
                    id.clone(),
                    crate::core::plan::Failure {
                        attempts,
                        retry_at,
                        error: err.to_string(),
                    },
                );
            }
            (None, None) => {}
        }
        if let Some(v) = published {
            holdings.ledger.published.insert(file_key(&id), v);
            delivered = true;
        }
        for (container, v) in copied {
            holdings.ledger.copied.insert(container, v);
        }
        retry_soon |= failed_actions > 0;
        for _ in 0..failed_actions {
            metrics.error("delivery");
        }
        match action_error {
            Some(e) => {
                holdings.delivery_errors.insert(id.clone(), e);
            }
            None => {
                holdings.delivery_errors.remove(&id);
            }
        }
    }
    retry_soon |= executor.attach_all(&p.attaches).await > 0;

    for id in &p.newly_orphaned {
        holdings.ledger.orphaned_since.insert(
            file_key(id),
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        );
    }
    for id in p.desired.keys() {
        holdings.ledger.orphaned_since.remove(&file_key(id));
    }
    for id in &p.remove {
        tracing::info!(cert = %id, "no container uses this certificate any more; removing its files");
        if let Err(e) = super::outputs::unpublish(&cfg.dirs, id).and_then(|()| holdings.forget(id))
        {
            tracing::warn!(cert = %id, error = %e, "cannot remove an unused certificate");
        }
    }
    if store.listed() {
        let live: std::collections::BTreeSet<&str> =
            containers.iter().map(|c| c.id.as_str()).collect();
        holdings
            .ledger
            .copied
            .retain(|id, _| live.contains(id.as_str()));
    }
    if let Err(e) = holdings.save_ledger() {
        tracing::error!(error = %e, "cannot save the delivery ledger");
    }
    let entries = status_entries(&p, holdings);
    if let Err(e) = crate::store::status::write(&cfg.state_dir, &entries) {
        tracing::warn!(error = %e, "cannot write status.json");
    }

    let mut next = p.next_wake.map(to_instant);
    // Anything just issued has a new renewal time, and failures a retry time: plan again.
    let retries = holdings
        .failures
        .values()
        .map(|f| to_instant(f.retry_at))
        .min();
    let renewals = holdings
        .held
        .values()
        .map(|h| to_instant(h.renew_at.min(h.not_after)))
        .min();
    next = [next, retries, renewals].into_iter().flatten().min();
    if retry_soon {
        next = Some(next.map_or(Instant::now() + ACTION_RETRY, |n| {
            n.min(Instant::now() + ACTION_RETRY)
        }));
    }
    let next = Some(next.map_or(Instant::now() + MAX_SLEEP, |n| {
        n.min(Instant::now() + MAX_SLEEP)
    }));
    Outcome {
        next_wake: next.map(|n| n.max(Instant::now() + Duration::from_millis(10))),
        desired: p.desired,
        delivered,
    }
}

/// Forgets publications whose files on disk are no longer exactly ours (deleted, altered), so the
/// next plan publishes them again.
fn verify_published(cfg: &ControllerConfig, holdings: &mut Holdings) {
    let mut stale = Vec::new();
    for key in holdings.ledger.published.keys() {
        let Some(id) = identity_of(key) else { continue };
        let Some(held) = holdings.held.get(&id) else {
            continue;
        };
        let dir = cfg.dirs.published_dir(&id);
        let intact = std::fs::read_to_string(dir.join("cert.pem"))
            .is_ok_and(|c| c == held.cert_pem)
            && std::fs::read_to_string(dir.join("key.pem"))
                .is_ok_and(|k| k == held.key.secret_pem());
        if !intact {
            tracing::warn!(cert = %id, dir = %dir.display(), "published files were changed or removed; writing them again");
            stale.push(key.clone());
        }
    }
    for key in stale {
        holdings.ledger.published.remove(&key);
    }
}

fn write_ca(cfg: &ControllerConfig, bundle: &str) {
    if bundle.is_empty() {
        return;
    }
    match write_ca_files(&cfg.dirs, &ca_parts(bundle)) {
        Ok(true) => {
            tracing::info!(file = %cfg.dirs.out.join("ca.pem").display(), "wrote the CA bundle")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot write the CA files; the previous ones stay in place")
        }
    }
}

fn flush(
    cfg: &ControllerConfig,
    holdings: &Holdings,
    desired: &BTreeMap<Identity, crate::core::plan::Desired>,
    bundle: &str,
) -> bool {
    let versions: BTreeMap<Identity, String> = holdings
        .ledger
        .published
        .iter()
        .filter_map(|(k, v)| Some((identity_of(k)?, v.clone())))
        .collect();
    match write_proxy_files(
        &cfg.dirs,
        &ca_parts(bundle),
        &cfg.traefik_options,
        desired,
        &versions,
    ) {
        Ok(written) => {
            if written {
                tracing::info!(file = %cfg.dirs.out.join("traefik/certdock.yml").display(), "wrote proxy configuration");
            }
            written
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot write proxy files; the previous ones stay in place");
            false
        }
    }
}
