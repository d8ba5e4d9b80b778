//! The controller loop: events, file changes and timers wake it; it reconciles and flushes proxy files.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use imbl::ordmap::DiffItem;
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, sleep_until};

use super::clock::Clock;
use super::config::{ControllerConfig, Reloadable};
use super::executor::Executor;
use super::file_watch::{FileChange, FileWatch, watch_files};
use super::holdings::Holdings;
use super::outputs::{ProxyInputs, refresh_ca_files, refresh_proxy_files};
use super::reconciler::{Outcome, Reconciler};
use super::store::ContainerStore;
use crate::authz::table::AllowTable;
use crate::ca::source::CertSource;
use crate::core::plan::DesiredSet;
use crate::docker::{DockerActions, WatchConfig, WatchEvent};
use crate::metrics::Metrics;

/// Quiet time after an event before reconciling: lets a `create`+`start` pair land together.
const RECONCILE_QUIET: Duration = Duration::from_millis(5);
/// Proxy files wait for a burst to end (quiet), but never longer than the cap after its start,
/// so 20 containers started together cause one or two Traefik reloads, not twenty. The quiet
/// time is longer than the gap between two `docker run`s of a script or Compose (~0.3 s here,
/// see BENCHMARKS.md) and short enough that the last container of a burst is in Traefik's
/// configuration within a second of its start.
pub const FLUSH_QUIET: Duration = Duration::from_millis(500);
pub const FLUSH_MAX: Duration = Duration::from_secs(2);
/// Longest time between two looks at the CA bundle (a rotation in the CA puts both roots in
/// `ca.pem` and the proxy files within this, and starts the re-issue of every certificate).
pub const CA_BUNDLE_CHECK: Duration = Duration::from_secs(10);
/// Pause after a file event before checking outputs (our own writes cause events too).
const FILE_QUIET: Duration = Duration::from_millis(200);

/// The controller and everything it is given. Like kube-runtime's `applier`, it opens no
/// connection itself, so the whole loop runs against a test engine on a paused clock.
pub struct Controller<S, A, W> {
    pub cfg: ControllerConfig,
    /// Where certificates come from: the CA in process, or a remote one.
    pub source: Arc<S>,
    /// What the loop does to containers: the engine, or a test engine.
    pub actions: Arc<A>,
    /// Makes the container event stream for a watch configuration; called again when a
    /// reload changes the label prefix or the resync interval.
    pub watch: W,
    pub metrics: Arc<Metrics>,
    /// The config file, when there is one to reload.
    pub reload: Option<Reloadable>,
    pub clock: Clock,
    /// Where the allow lists of the labels are published for the forward-auth decider.
    pub allow: Arc<AllowTable>,
}

/// The OS watch of the output directory and the config file, and its events.
struct Files {
    _watch: FileWatch,
    changes: UnboundedReceiver<FileChange>,
}

impl Files {
    fn watch(cfg: &ControllerConfig, reload: Option<&Reloadable>) -> io::Result<Files> {
        let config = reload.map(|r| r.path.as_path());
        let (watch, changes) = watch_files(&cfg.dirs.out, config).map_err(io::Error::other)?;
        Ok(Files {
            _watch: watch,
            changes,
        })
    }
}

/// When the loop runs next: one reconcile deadline, one proxy-file deadline.
struct Timers {
    reconcile_at: Option<Instant>,
    flush_at: Option<Instant>,
    burst_started: Option<Instant>,
}

impl Timers {
    /// Reconcile no later than `at` (an earlier deadline wins).
    fn reconcile_by(&mut self, at: Instant) {
        self.reconcile_at = Some(self.reconcile_at.map_or(at, |t| t.min(at)));
    }

    /// Flush after the burst settles: `FLUSH_QUIET` after the last change, at most `FLUSH_MAX`
    /// after the first.
    fn burst(&mut self, now: Instant) {
        let first = *self.burst_started.get_or_insert(now);
        self.flush_at = Some((now + FLUSH_QUIET).min(first + FLUSH_MAX));
    }

    fn wake(&self) -> Option<Instant> {
        [self.reconcile_at, self.flush_at]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The running loop: what it was given and what it keeps between wake-ups.
struct Running<S, A, W, E> {
    cfg: ControllerConfig,
    source: Arc<S>,
    metrics: Arc<Metrics>,
    allow: Arc<AllowTable>,
    reload: Option<Reloadable>,
    watch: W,
    /// The configuration `events` was made for.
    watching: WatchConfig,
    events: Pin<Box<E>>,
    files: Files,
    rec: Reconciler<S, A>,
    store: ContainerStore,
    bundle: String,
    /// The plan's wanted certificates as of the last pass, for the proxy files.
    desired: DesiredSet,
    /// Check published files against the holdings at the next pass.
    verify_outputs: bool,
    timers: Timers,
}

// === impl Controller ===

impl<S, A, W, E> Controller<S, A, W>
where
    S: CertSource,
    A: DockerActions,
    W: FnMut(WatchConfig) -> E,
    E: Stream<Item = WatchEvent> + Send + 'static,
{
    /// Runs until `shutdown` resolves.
    ///
    /// # Errors
    /// Only at start: `STATE/managed/` unreadable, or the output directory not watchable.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Controller {
            cfg,
            source,
            actions,
            mut watch,
            metrics,
            reload,
            clock,
            allow,
        } = self;
        let holdings = Holdings::load(&cfg.state_dir)?;
        for (id, h) in &holdings.held {
            metrics.set_certificate(&id.to_string(), OffsetDateTime::from(h.not_after));
        }
        let files = Files::watch(&cfg, reload.as_ref())?;
        let watching = cfg.watch_config();
        let events = Box::pin(watch(watching.clone()));
        let executor = Executor::new(source.clone(), actions);
        let rec = Reconciler::new(executor, holdings, metrics.clone(), clock);
        tracing::info!(out = %cfg.dirs.out.display(), "controller started");
        let mut l = Running {
            cfg,
            source,
            metrics,
            allow,
            reload,
            watch,
            watching,
            events,
            files,
            rec,
            store: ContainerStore::default(),
            bundle: String::new(),
            desired: DesiredSet::default(),
            verify_outputs: true,
            timers: Timers {
                reconcile_at: Some(Instant::now()),
                flush_at: Some(Instant::now()),
                burst_started: None,
            },
        };
        tokio::pin!(shutdown);
        loop {
            let wake = l.timers.wake();
            let timer = async {
                match wake {
                    Some(w) => sleep_until(w).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(ev) = l.events.next() => l.on_event(ev),
                Some(change) = l.files.changes.recv() => l.on_file_change(change),
                _ = timer => l.on_timer().await,
            }
        }
        tracing::info!("controller stopped");
        Ok(())
    }
}

// === impl Running ===

impl<S, A, W, E> Running<S, A, W, E>
where
    S: CertSource,
    A: DockerActions,
    W: FnMut(WatchConfig) -> E,
    E: Stream<Item = WatchEvent> + Send + 'static,
{
    fn on_event(&mut self, ev: WatchEvent) {
        match &ev {
            WatchEvent::InitDone => self.metrics.resyncs.inc(),
            WatchEvent::Upsert(_) | WatchEvent::Remove(_) => self.metrics.docker_events.inc(),
            _ => 0,
        };
        if self.store.apply(ev) {
            self.timers.reconcile_by(Instant::now() + RECONCILE_QUIET);
        }
    }

    fn on_file_change(&mut self, change: FileChange) {
        let soon = Instant::now() + FILE_QUIET;
        match change {
            FileChange::Outputs => self.verify_outputs = true,
            FileChange::Config => {
                if !self.reload_config() {
                    return;
                }
                // Everything the settings shape is rewritten now, not at the next burst.
                self.timers.flush_at = Some(soon);
            }
        }
        // Our own writes land here too: look after a short pause, once per storm.
        self.timers.reconcile_by(soon);
        // A flush already pending rewrites an altered file anyway; pulling it earlier would
        // defeat the burst debounce, since every publish under OUT/certs/ is a file event (it
        // made one Traefik reload per container).
        self.timers.flush_at = Some(self.timers.flush_at.unwrap_or(soon));
    }

    /// Loads the changed config file and hands it to every piece. Returns whether it applied.
    fn reload_config(&mut self) -> bool {
        let Some(reload) = self.reload.as_ref() else {
            return false;
        };
        let mut new = match (reload.load)() {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %e, "the changed config file is refused; keeping the running settings");
                return false;
            }
        };
        tracing::info!("settings reloaded from the config file");
        if new.state_dir != self.cfg.state_dir {
            // The holdings (and, in `run`, the CA) live there: it stays.
            tracing::warn!(state_dir = %self.cfg.state_dir.display(), "the state directory cannot change while running; keeping it");
            new.state_dir = self.cfg.state_dir.clone();
        }
        if new.watch_config() != self.watching {
            tracing::info!(prefix = %new.label_prefix, "watching containers again with the new settings");
            self.watching = new.watch_config();
            self.events = Box::pin((self.watch)(self.watching.clone()));
        }
        if new.dirs.out != self.cfg.dirs.out {
            match Files::watch(&new, Some(reload)) {
                Ok(files) => self.files = files,
                Err(e) => {
                    tracing::error!(error = %e, out = %new.dirs.out.display(), "cannot watch the new output directory")
                }
            }
            self.verify_outputs = true;
        }
        self.rec.settings_changed();
        self.cfg = new;
        true
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.timers.reconcile_at.is_some_and(|t| t <= now) {
            let outcome = self.pass().await;
            // The CA bundle is asked for again at least this often: a rotation is seen soon.
            self.timers.reconcile_at = Some(outcome.next_wake.min(now + CA_BUNDLE_CHECK));
            // Compared in what the two versions do not share: nothing for a skipped pass (the
            // very same set), what it planned for a pass made from a part (issue 17).
            let (mut changed, mut allow_changed) = (false, false);
            for d in self.desired.diff(&outcome.desired) {
                changed = true;
                allow_changed = match d {
                    DiffItem::Add(_, d) | DiffItem::Remove(_, d) => d.allow.is_some(),
                    DiffItem::Update { old, new } => old.1.allow != new.1.allow,
                };
                if allow_changed {
                    break;
                }
            }
            if allow_changed {
                // At once, not after the burst: the decider must know a list before Traefik's
                // configuration names its middleware.
                self.allow.publish(
                    outcome
                        .desired
                        .iter()
                        .filter_map(|(id, d)| Some((id.status_name(), d.allow.clone()?)))
                        .collect(),
                );
            }
            self.desired = outcome.desired;
            if changed || outcome.delivered {
                self.timers.burst(now);
            }
        }
        if self.timers.flush_at.is_some_and(|t| t <= Instant::now()) {
            self.timers.flush_at = None;
            self.timers.burst_started = None;
            let cfg = &self.cfg;
            if !self.bundle.is_empty()
                && refresh_proxy_files(
                    &cfg.dirs,
                    &ProxyInputs {
                        bundle: &self.bundle,
                        options: &cfg.traefik_options,
                        desired: &self.desired,
                        versions: self.rec.holdings.ledger.published(),
                        forward_auth: cfg.forward_auth.as_deref(),
                    },
                )
            {
                self.metrics.proxy_config_written("traefik");
            }
        }
    }

    /// One reconcile, with what must precede it: the CA bundle and the CA files.
    async fn pass(&mut self) -> Outcome {
        match self.source.bundle().await {
            Ok(b) => self.bundle = b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the CA bundle; keeping the last one")
            }
        }
        // The CA files go out at once (before any delivery that relies on them); only the
        // Traefik file waits for the burst to settle.
        refresh_ca_files(&self.cfg.dirs, &self.bundle);
        if std::mem::take(&mut self.verify_outputs) {
            self.rec.verify_outputs(&self.cfg.dirs);
        }
        self.rec
            .reconcile(&self.cfg, &mut self.store, &self.bundle)
            .await
    }
}
