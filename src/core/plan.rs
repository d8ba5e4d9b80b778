//! The decision: labelled containers + what certdock holds now → a plan of actions.
//!
//! Pure: the clock, the CA's answers and Docker's state arrive as arguments. The reconcile loop
//! calls [`plan`] on the whole world after every burst of events and on every timer (after a
//! plan with nothing to do, on the part a few containers' changes touch: [`plan_after_idle`],
//! which gives the same plan), and only the executor touches Docker, files or the CA. Nothing
//! here branches on *which* event woke the loop: the same world always gives the same plan.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::authz::{AllowList, GroupName};
use super::container::{ContainerInfo, ContainerState};
use super::container_set::ContainerSet;
use super::labelled::Labelled;
use super::labels::{CertSpec, ContainerPath, Delivery, Owner, Reload};
use super::names::{CertName, San, Usage, traefik_client};
use super::trust_only;

mod part;
mod reason;
mod wakes;
mod walk;
pub use part::{
    AfterIdle, CarriedOut, IdleOutcome, PartPlan, Scope, idle_plan_holds, plan_after_idle,
};
pub use reason::IssueReason;
use reason::issue_reason;
pub use wakes::WakeIndex;
pub use walk::Step;
use walk::union;

/// Which certificate: one a container asked for, or one certdock needs for itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    Named(CertName),
    /// The client certificate Traefik presents to backends (`certdock` serversTransport).
    TraefikClient,
}

impl Identity {
    /// The certificate name the CA signs (subject CN).
    pub fn cert_name(&self) -> CertName {
        match self {
            Identity::Named(n) => n.clone(),
            Identity::TraefikClient => CertName::parse(traefik_client::CN)
                .unwrap_or_else(|e| unreachable!("the literal {:?}: {e}", traefik_client::CN)),
        }
    }

    /// The name shown in `certdock status`.
    pub fn status_name(&self) -> String {
        match self {
            Identity::Named(n) => n.to_string(),
            Identity::TraefikClient => traefik_client::NAME.to_string(),
        }
    }

    /// Its directory under the output directory, relative.
    pub fn out_dir(&self) -> String {
        match self {
            Identity::Named(n) => format!("certs/{n}"),
            Identity::TraefikClient => traefik_client::NAME.to_string(),
        }
    }

    /// The key of its files under `STATE/managed/` and in the delivery ledger.
    pub fn file_key(&self) -> String {
        match self {
            Identity::Named(n) => n.to_string(),
            Identity::TraefikClient => traefik_client::FILE_KEY.to_string(),
        }
    }

    /// The inverse of [`Identity::file_key`]; `None` for a key no identity has.
    pub fn from_file_key(key: &str) -> Option<Identity> {
        match key {
            traefik_client::FILE_KEY => Some(Identity::TraefikClient),
            other => CertName::parse(other).ok().map(Identity::Named),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Named(n) => n.fmt(f),
            Identity::TraefikClient => write!(f, "{} (certdock itself)", traefik_client::NAME),
        }
    }
}

/// The certificate certdock holds now for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// What deliveries compare: changes with the certificate and with the CA bundle.
    pub version: String,
    pub sans: Vec<San>,
    pub groups: BTreeSet<GroupName>,
    pub usage: Usage,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub renew_at: SystemTime,
    /// False when the intermediate that signed it is no longer in the CA bundle.
    pub issuer_trusted: bool,
}

/// The last failed issuance for an identity, to back off before the next try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub attempts: u32,
    pub retry_at: SystemTime,
    pub error: String,
}

/// Everything the decision depends on.
pub struct World<'a> {
    /// Every container with its labels parsed ([`Labelled`]), by name then id.
    pub containers: &'a ContainerSet,
    /// `--label-prefix`, for the refusals' words.
    pub label_prefix: &'a str,
    /// `--proxy-network`, when set.
    pub proxy_network: Option<&'a str>,
    /// Whether to keep a client certificate for Traefik's serversTransport.
    pub traefik_client: Option<&'a CertSpecLite>,
    pub current: &'a BTreeMap<Identity, Current>,
    pub failures: &'a BTreeMap<Identity, Failure>,
    /// Version last copied into each container (by container id).
    pub copied: &'a BTreeMap<String, String>,
    /// The version of `ca.pem` alone (a digest of the CA bundle), for `usage=none` containers.
    pub ca_version: &'a str,
    /// Version last published under the output directory, per identity.
    pub published: &'a BTreeMap<Identity, String>,
    /// When each identity stopped being wanted by any container.
    pub orphaned_since: &'a BTreeMap<Identity, SystemTime>,
    /// No removal happens before the first full list of containers is in.
    pub first_list_done: bool,
    /// How long an unwanted certificate's files stay before removal.
    pub grace: Duration,
    pub now: SystemTime,
}

/// The identity-defining part of a request, shared by every container using the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpecLite {
    pub sans: Vec<San>,
    /// Bound to the certificate: a change is a new certificate.
    pub groups: BTreeSet<GroupName>,
    pub usage: Usage,
    pub ttl: Duration,
}

/// What is wanted for one identity after merging all its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub spec: CertSpecLite,
    /// Files under the output directory (volume delivery, or for Traefik's `tls.certificates`).
    pub publish: bool,
    /// Listed in Traefik's `tls.certificates`.
    pub traefik_hosts: bool,
    /// `certdock.allow`: who may call this server through its forward-auth middleware.
    pub allow: Option<AllowList>,
    /// Every container using it.
    pub containers: Vec<Member>,
}

/// A container using an identity, shared with the store (no copy of its id and name per
/// pass). Compared by id and name only: what a plan says of its members never depends on
/// their running states (see [`idle_plan_holds`]).
#[derive(Debug, Clone)]
pub struct Member(pub Arc<ContainerInfo>);

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id && self.0.name == other.0.name
    }
}

impl Eq for Member {}

/// Every identity's desired certificate, in a persistent map (see `core::container_set`): a plan
/// made from a part of the world (see [`plan_after_idle`]) is the last plan's map with the part's
/// entries changed, sharing the rest, and two such maps compare in what they do not share.
pub type DesiredSet = imbl::OrdMap<Identity, Arc<Desired>>;

/// Copy the identity's current certificate into one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub container_id: String,
    pub container_name: String,
    pub path: ContainerPath,
    pub owner: Owner,
    /// Sent after the copy when the container runs, or started during it.
    pub reload: Option<Reload>,
    pub running: bool,
    /// Nothing delivered here yet (ledger): the upload skips reading the layout.
    pub first: bool,
}

/// All work for one identity, in order: issue, then publish and copy, then reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPlan {
    pub id: Identity,
    pub issue: Option<(CertSpecLite, IssueReason)>,
    pub publish: bool,
    /// Containers to signal after a publish (volume delivery with a reload label).
    pub publish_reloads: Vec<(String, Reload)>,
    pub copies: Vec<Copy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    pub container_id: String,
    pub network: String,
    pub alias: String,
}

/// A container that gets nothing, and why (shown in `status` and the log).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refusal {
    pub container_id: String,
    pub container_name: String,
    /// The name it asked for, when that much was readable.
    pub name: Option<String>,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub work: Vec<CertPlan>,
    pub attaches: Vec<Attach>,
    /// `usage=none` containers whose `ca.pem` is not the current one (see `core::trust_only`).
    pub trust_copies: Vec<Copy>,
    /// Every `usage=none` container: (name, container name), for `status`.
    pub trust_only: Vec<(String, String)>,
    pub refused: Vec<Refusal>,
    /// Shared, each certificate too: a plan made from a part of the world (see [`plan_after_idle`])
    /// takes the rest from the last plan without a copy.
    pub desired: DesiredSet,
    /// Identities no container wants any more, first seen unwanted now.
    pub newly_orphaned: Vec<Identity>,
    /// Orphans past the grace period: forget them and remove their files.
    pub remove: Vec<Identity>,
    /// When each identity's plan changes with the clock alone (its renewal, retry or removal
    /// time), at most one time per identity: the loop runs again at the earliest, and after a
    /// plan with nothing to do only the identities whose time came are planned again
    /// ([`WakeIndex`]).
    pub wakes: Vec<(Identity, SystemTime)>,
}

impl Plan {
    /// Nothing to do: no issuance, delivery, attach, orphan or removal.
    pub fn is_idle(&self) -> bool {
        self.work.is_empty()
            && self.attaches.is_empty()
            && self.trust_copies.is_empty()
            && self.newly_orphaned.is_empty()
            && self.remove.is_empty()
    }

    /// The earliest time the loop must run again without an event.
    pub fn next_wake(&self) -> Option<SystemTime> {
        self.wakes.iter().map(|(_, t)| *t).min()
    }
}

fn lite(spec: &CertSpec) -> CertSpecLite {
    CertSpecLite {
        sans: spec.sans.clone(),
        groups: spec.groups.clone(),
        usage: spec.usage,
        ttl: spec.ttl,
    }
}

/// Whether `spec` asks for the certificate `lite` describes (compared in place: no copy).
fn same_order(lite: &CertSpecLite, spec: &CertSpec) -> bool {
    lite.sans == spec.sans
        && lite.groups == spec.groups
        && lite.usage == spec.usage
        && lite.ttl == spec.ttl
}

/// Merges the containers' specs into one desired certificate per identity. A name used by
/// several containers must be asked for identically; later containers that differ are refused.
/// Each identity comes with its accepted containers (its members), so the plan finds them
/// without a search per identity.
fn desire<'w>(world: &World<'w>, refused: &mut Vec<Refusal>) -> (Wanted<'w>, Accepted<'w>) {
    let mut desired: Wanted<'w> = BTreeMap::new();
    let mut accepted = Vec::new();
    // Only containers that ask for certdock matter, taken by name then id (the set's order):
    // which of two disagreeing containers is refused must not depend on the order they came in.
    let containers = world.containers.iter().map(|l| &**l).filter(|l| l.asks());
    for Labelled { container, spec } in containers {
        let c: &'w ContainerInfo = container;
        let spec = match spec {
            Ok(Some(spec)) => spec,
            Ok(None) => continue,
            Err(e) => {
                refused.push(Refusal {
                    container_id: c.id.clone(),
                    container_name: c.name.clone(),
                    name: c
                        .labels
                        .get(&format!("{}.name", world.label_prefix))
                        .cloned(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        if !spec.usage.wants_certificate() {
            accepted.push((c, spec));
            continue;
        }
        match desired.entry(Identity::Named(spec.name.clone())) {
            Entry::Occupied(mut o) => {
                let (d, members) = o.get_mut();
                if !same_order(&d.spec, spec) || d.allow != spec.allow {
                    let first = members.first().map(|(m, _)| m.name.as_str());
                    refused.push(Refusal {
                        container_id: c.id.clone(),
                        container_name: c.name.clone(),
                        name: Some(spec.name.to_string()),
                        error: format!(
                            "label {}.name={}: container {} already uses this name with other sans, usage, ttl, groups or allow list; containers sharing a name must ask for the same certificate",
                            world.label_prefix,
                            spec.name,
                            first.unwrap_or_default()
                        ),
                    });
                    continue;
                }
                d.publish |= spec.delivery == Delivery::Volume || spec.traefik_hosts;
                d.traefik_hosts |= spec.traefik_hosts;
                members.push((container, spec));
            }
            Entry::Vacant(v) => {
                let d = Desired {
                    spec: lite(spec),
                    publish: spec.delivery == Delivery::Volume || spec.traefik_hosts,
                    traefik_hosts: spec.traefik_hosts,
                    allow: spec.allow.clone(),
                    // Filled from the members when the plan is done.
                    containers: Vec::new(),
                };
                v.insert((d, vec![(container, spec)]));
            }
        }
        accepted.push((c, spec));
    }
    if let Some(spec) = world.traefik_client {
        let d = Desired {
            spec: spec.clone(),
            publish: true,
            traefik_hosts: false,
            allow: None,
            containers: Vec::new(),
        };
        desired.insert(Identity::TraefikClient, (d, Vec::new()));
    }
    (desired, accepted)
}

/// What each identity wants, with the containers that want it (its members).
type Wanted<'w> = BTreeMap<Identity, (Desired, Vec<(&'w Arc<ContainerInfo>, &'w CertSpec)>)>;
/// Every container that gets what it asked for (certificate or trust only), with its spec.
type Accepted<'w> = Vec<(&'w ContainerInfo, &'w CertSpec)>;

/// Computes the plan. See the module docs.
pub fn plan(world: &World<'_>) -> Plan {
    let mut out = Plan::default();
    let (wanted, accepted) = desire(world, &mut out.refused);
    let (mut current_of, mut published_of) = (Step::new(world.current), Step::new(world.published));
    for (id, (d, members)) in &wanted {
        let current = current_of.at(id);
        let mut issue = issue_reason(&d.spec, current, world.now).map(|r| (d.spec.clone(), r));
        if issue.is_some()
            && let Some(f) = world.failures.get(id)
            && f.retry_at > world.now
        {
            // Backing off after a failure; the current certificate (if any) keeps being served.
            // Its renewal time is past, so only the retry time may wake the loop.
            out.wakes.push((id.clone(), f.retry_at));
            issue = None;
        } else if issue.is_none()
            && let Some(cur) = current
        {
            out.wakes
                .push((id.clone(), cur.renew_at.min(cur.not_after)));
        }
        // Deliveries refer to the certificate current after the issue step: a fresh issuance
        // always redelivers; otherwise only where the delivered serial is not the current one.
        let fresh = issue.is_some();
        let serial = current.map(|c| c.version.as_str());
        let publish = d.publish
            && (fresh || (serial.is_some() && published_of.at(id).map(String::as_str) != serial));
        let mut copies = Vec::new();
        let mut publish_reloads = Vec::new();
        for &(c, spec) in members {
            let running = c.state == ContainerState::Running;
            match spec.delivery {
                Delivery::Container => {
                    let have = world.copied.get(&c.id).map(String::as_str);
                    if fresh || (serial.is_some() && have != serial) {
                        copies.push(Copy {
                            container_id: c.id.clone(),
                            container_name: c.name.clone(),
                            path: spec.path.clone(),
                            owner: spec.owner,
                            reload: spec.reload,
                            running,
                            first: have.is_none(),
                        });
                    }
                }
                Delivery::Volume => {
                    if publish
                        && running
                        && let Some(r) = spec.reload
                    {
                        publish_reloads.push((c.id.clone(), r));
                    }
                }
                Delivery::None => {}
            }
        }
        if issue.is_some() || publish || !copies.is_empty() {
            out.work.push(CertPlan {
                id: id.clone(),
                issue,
                publish,
                publish_reloads,
                copies,
            });
        }
    }

    out.trust_copies = trust_only::copies(&accepted, world.copied, world.ca_version);
    out.trust_only = trust_only::members(&accepted);
    if let Some(network) = world.proxy_network {
        for (c, spec) in &accepted {
            if spec.network && !c.networks.iter().any(|n| n == network) {
                out.attaches.push(Attach {
                    container_id: c.id.clone(),
                    network: network.to_string(),
                    alias: spec.name.to_string(),
                });
            }
        }
    }

    // Held or published, and wanted by nobody.
    let mut wanted_of = Step::new(&wanted);
    let mut orphaned_of = Step::new(world.orphaned_since);
    for id in union(world.current.keys(), world.published.keys()) {
        if wanted_of.at(id).is_some() {
            continue;
        }
        match orphaned_of.at(id) {
            None => {
                out.wakes.push((id.clone(), world.now + world.grace));
                out.newly_orphaned.push(id.clone());
            }
            Some(since) => {
                let due = *since + world.grace;
                if world.first_list_done && world.now >= due {
                    out.remove.push(id.clone());
                } else {
                    let at = due.max(world.now + Duration::from_secs(1));
                    out.wakes.push((id.clone(), at));
                }
            }
        }
    }
    out.desired = wanted
        .into_iter()
        .map(|(id, (mut d, members))| {
            d.containers = members
                .into_iter()
                .map(|(c, _)| Member(c.clone()))
                .collect();
            (id, Arc::new(d))
        })
        .collect();
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "plan_trust_and_idle_tests.rs"]
mod trust_and_idle_tests;
