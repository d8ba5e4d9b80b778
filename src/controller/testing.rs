//! Test doubles for the loop: an in-memory Docker engine and the real CA on the loop's clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use bollard::errors::Error as BollardError;
use futures_util::Stream;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::clock::Clock;
use super::config::ControllerConfig;
use super::outputs::OutputDirs;
use crate::ca::authority::CaLifetimes;
use crate::ca::authorize::{Local, Order};
use crate::ca::issue::Issued;
use crate::ca::keys::KeyType;
use crate::ca::local::{LocalCa, OpenMode, Policy};
use crate::ca::source::{CertSource, LeafOrder, SourceError};
use crate::core::container::{ContainerInfo, ContainerState};
use crate::core::names::CertName;
use crate::core::policy::NamePolicy;
use crate::docker::{DockerActions, DockerError, Upload, WatchConfig, WatchEvent};

/// The settings of a test controller over `root`: state and output directories inside it,
/// forward-auth on, 10 minutes of grace, a 60 s rollover spread.
pub fn config(root: &Path) -> ControllerConfig {
    let out = root.join("out");
    ControllerConfig {
        state_dir: root.join("state"),
        dirs: OutputDirs {
            out: out.clone(),
            proxy_view: out,
        },
        label_prefix: "certdock".into(),
        names: NamePolicy::default(),
        ttls: Default::default(),
        proxy_network: None,
        resync: std::time::Duration::from_secs(60),
        traefik_options: Default::default(),
        grace: std::time::Duration::from_secs(600),
        forward_auth: Some("https://certdock:8443".into()),
        rollover_spread: std::time::Duration::from_secs(60),
    }
}

/// Something the engine was asked to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    Upload { container: String, version: String },
    Signal { container: String, signal: String },
    Restart { container: String },
    Attach { network: String, container: String },
}

#[derive(Default)]
struct Engine {
    containers: BTreeMap<String, ContainerInfo>,
    /// Open watches: the label prefix each was asked for, and where its events go.
    subscribers: Vec<(String, mpsc::UnboundedSender<WatchEvent>)>,
    /// Every watch configuration asked for, in order.
    watches: Vec<WatchConfig>,
    /// While true, a new watch sends its list but not `InitDone`.
    hold_list: bool,
    held_back: Vec<mpsc::UnboundedSender<WatchEvent>>,
    /// While true, every action fails as an engine answering 500 would.
    failing: bool,
    /// (container, dir) → file name → bytes, as delivered.
    files: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    log: Vec<(Instant, Act)>,
}

/// An in-memory Docker engine: containers, the event stream, and a record of every action.
#[derive(Default)]
pub struct TestEngine {
    inner: Mutex<Engine>,
}

impl TestEngine {
    fn lock(&self) -> MutexGuard<'_, Engine> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A watch of this engine, as `docker::watch` gives: the full list, then changes.
    pub fn watch(&self, config: WatchConfig) -> impl Stream<Item = WatchEvent> + Send + use<> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut e = self.lock();
        let enable = format!("{}.enable", config.label_prefix);
        let _ = tx.send(WatchEvent::InitStart);
        for c in e.containers.values() {
            if c.labels.contains_key(&enable) {
                let _ = tx.send(WatchEvent::InitApply(c.clone()));
            }
        }
        if e.hold_list {
            e.held_back.push(tx.clone());
        } else {
            let _ = tx.send(WatchEvent::InitDone);
        }
        e.subscribers.push((config.label_prefix.clone(), tx));
        e.watches.push(config);
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
        )
    }

    pub fn hold_list(&self, hold: bool) {
        let mut e = self.lock();
        e.hold_list = hold;
        if !hold {
            for tx in std::mem::take(&mut e.held_back) {
                let _ = tx.send(WatchEvent::InitDone);
            }
        }
    }

    /// Creates or changes a container (running) and tells every watch.
    pub fn run(&self, id: &str, labels: &[(String, String)]) {
        let info = ContainerInfo {
            id: id.into(),
            name: id.into(),
            labels: labels.iter().cloned().collect(),
            state: ContainerState::Running,
            networks: Vec::new(),
        };
        let mut e = self.lock();
        e.containers.insert(id.into(), info.clone());
        for (_, tx) in &e.subscribers {
            let _ = tx.send(WatchEvent::Upsert(info.clone()));
        }
    }

    pub fn remove(&self, id: &str) {
        let mut e = self.lock();
        e.containers.remove(id);
        for (_, tx) in &e.subscribers {
            let _ = tx.send(WatchEvent::Remove(id.into()));
        }
    }

    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    pub fn watches(&self) -> Vec<WatchConfig> {
        self.lock().watches.clone()
    }

    pub fn log(&self) -> Vec<(Instant, Act)> {
        self.lock().log.clone()
    }

    /// The file as delivered into `container` under `dir`.
    pub fn file(&self, container: &str, dir: &str, name: &str) -> Option<Vec<u8>> {
        let e = self.lock();
        e.files
            .get(&(container.to_string(), dir.to_string()))?
            .get(name)
            .cloned()
    }

    pub fn uploads_to(&self, container: &str) -> Vec<String> {
        self.lock()
            .log
            .iter()
            .filter_map(|(_, a)| match a {
                Act::Upload {
                    container: c,
                    version,
                } if c == container => Some(version.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, pred: impl Fn(&Act) -> bool) -> usize {
        self.lock().log.iter().filter(|(_, a)| pred(a)).count()
    }

    /// Records `act`, or fails as the engine would (500 while failing, 404 for a missing
    /// container, 409 for a signal to one that does not run).
    fn act(&self, container: &str, act: Act) -> Result<(), DockerError> {
        let mut e = self.lock();
        let running = |c: &ContainerInfo| c.state == ContainerState::Running;
        let status_code = if e.failing {
            500
        } else if !e.containers.contains_key(container) {
            404
        } else if matches!(act, Act::Signal { .. })
            && !e.containers.get(container).is_some_and(running)
        {
            409
        } else {
            e.log.push((Instant::now(), act));
            return Ok(());
        };
        Err(DockerError::UploadFiles {
            id: container.to_string(),
            source: BollardError::DockerResponseServerError {
                status_code,
                message: "test engine".into(),
            },
        })
    }
}

impl DockerActions for TestEngine {
    async fn upload(&self, u: Upload<'_>) -> Result<(), DockerError> {
        let act = Act::Upload {
            container: u.container_id.into(),
            version: u.version.into(),
        };
        self.act(u.container_id, act)?;
        let files = u
            .files
            .iter()
            .map(|(n, c, _)| (n.clone(), c.clone()))
            .collect();
        let key = (u.container_id.to_string(), u.dir.to_string());
        self.lock().files.insert(key, files);
        Ok(())
    }

    async fn signal(&self, container_id: &str, signal: &str) -> Result<(), DockerError> {
        let act = Act::Signal {
            container: container_id.into(),
            signal: signal.into(),
        };
        self.act(container_id, act)
    }

    async fn restart(&self, container_id: &str) -> Result<(), DockerError> {
        let act = Act::Restart {
            container: container_id.into(),
        };
        self.act(container_id, act)
    }

    async fn connect_network(
        &self,
        network: &str,
        container_id: &str,
        _aliases: &[String],
    ) -> Result<(), DockerError> {
        let act = Act::Attach {
            network: network.into(),
            container: container_id.into(),
        };
        self.act(container_id, act)
    }
}

/// Whether the test CA answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaMode {
    Up,
    Down,
}

/// The real CA (`LocalCa` in a temp dir) signing at the loop's clock, which can be taken down.
pub struct TestCa {
    ca: LocalCa,
    clock: Clock,
    mode: Mutex<CaMode>,
    /// (when, certificate name) of every order received.
    orders: Mutex<Vec<(Instant, CertName)>>,
}

impl TestCa {
    /// A new CA under `dir`, refusing the names `names` refuses.
    pub fn open(dir: &Path, names: NamePolicy, clock: Clock) -> TestCa {
        let policy = Policy {
            names,
            ttls: Default::default(),
        };
        let now = OffsetDateTime::from(clock.now());
        let mode = OpenMode::CreateIfMissing(KeyType::EcdsaP256);
        let ca = LocalCa::open(dir, policy, CaLifetimes::default(), mode, now)
            .unwrap_or_else(|e| panic!("test CA: {e}"));
        TestCa {
            ca,
            clock,
            mode: Mutex::new(CaMode::Up),
            orders: Mutex::default(),
        }
    }

    pub fn set(&self, mode: CaMode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// When orders for `name` arrived.
    pub fn orders_for(&self, name: &str) -> Vec<Instant> {
        let orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        orders
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(t, _)| *t)
            .collect()
    }
}

impl CertSource for TestCa {
    async fn issue(&self, order: &LeafOrder) -> Result<Issued, SourceError> {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        orders.push((Instant::now(), order.name.clone()));
        drop(orders);
        if *self.mode.lock().unwrap_or_else(|e| e.into_inner()) == CaMode::Down {
            return Err(SourceError::Unavailable("test CA is down".into()));
        }
        let who = if order.internal {
            Local::ProxyClient
        } else {
            Local::Controller
        };
        let req = Order {
            name: order.name.clone(),
            sans: order.sans.clone(),
            usage: order.usage,
            groups: order.groups.clone(),
            ttl: Some(order.ttl),
            key_type: KeyType::EcdsaP256,
        };
        // Signed in place, not on the blocking pool: the paused clock must not move meanwhile.
        let now = OffsetDateTime::from(self.clock.now());
        let issued = self
            .ca
            .authorize_local(who, req)
            .and_then(|auth| self.ca.sign(auth, now))
            .and_then(|pending| pending.wait());
        issued.map_err(SourceError::from)
    }

    async fn bundle(&self) -> Result<String, SourceError> {
        Ok(self.ca.bundle_pem())
    }

    async fn revoked(&self) -> crate::ca::source::RevokedSerials {
        self.ca.revoked_serials().unwrap_or_default()
    }
}

impl TestCa {
    /// Revokes a serial as `certdock revoke` would.
    pub fn revoke(&self, serial: &str) {
        self.ca
            .revoke(serial, OffsetDateTime::now_utc())
            .expect("a serial this CA issued");
    }
}
