//! A never-ending stream of container changes: subscribe, list, follow events; relist on resync or reconnect.
//!
//! Modelled on kube-runtime's `watcher`: an explicit [`State`] driven by [`Watcher::step`], no
//! cache beyond the ids of opted-in containers, errors absorbed by reconnecting with backoff.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::{Stream, StreamExt, stream};
use tokio::time::{Instant, sleep, sleep_until};

use super::backoff::Backoff;
use super::{DockerError, convert, ops};
use crate::core::container::ContainerInfo;

/// Container actions that can change what the controller sees. `pause`/`unpause` are included
/// because a paused container is reported as stopped.
const CONTAINER_ACTIONS: [&str; 8] = [
    "create", "start", "die", "destroy", "rename", "update", "pause", "unpause",
];
const NETWORK_ACTIONS: [&str; 2] = ["connect", "disconnect"];

/// One change observed by [`watch`]. Consumers apply these to a store; like kube-runtime, an
/// `Init*` batch replaces the whole store at `InitDone` (buffer `InitApply`s until then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A container appeared or changed (state, name, networks). For containers without the
    /// `<prefix>.enable` label, and for every `create`, the record is built from the event
    /// alone: `networks` is empty.
    Upsert(ContainerInfo),
    /// The container with this id no longer exists. May name an id never upserted.
    Remove(String),
    /// A full list starts (after every (re)connect and every resync).
    InitStart,
    /// One container of the full list.
    InitApply(ContainerInfo),
    /// The full list is complete: containers not in it are gone.
    InitDone,
}

/// What to watch and how often to relist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// Label prefix, e.g. `certdock`: containers with `<prefix>.enable` are inspected on events.
    pub label_prefix: String,
    /// Time between full relists (the safety net for anything missed). Each resync also renews
    /// the event subscription, so a silently dead connection cannot outlive one interval.
    pub resync: Duration,
}

impl WatchConfig {
    /// The given prefix with the default resync interval (60 s).
    pub fn new(label_prefix: impl Into<String>) -> Self {
        Self {
            label_prefix: label_prefix.into(),
            resync: Duration::from_secs(60),
        }
    }
}

/// Watches all containers (running or not) of one Docker engine, forever.
///
/// `connect` builds a client (e.g. [`super::connect`]); it is called again after every failure,
/// so an engine upgraded across a restart is renegotiated. The stream never ends and never
/// yields errors: failures are logged, and the watcher reconnects with backoff (0.5 s doubling to
/// 30 s, jittered) and relists. While Docker is unreachable, even at start, it yields nothing.
///
/// Order per connection: subscribe to events (from the daemon's clock reading, so nothing
/// between subscribing and listing is lost), list (`InitStart`, `InitApply`…, `InitDone`), then
/// follow events. Consume it from one task: `while let Some(ev) = stream.next().await { … }`.
pub fn watch<F, Fut>(connect: F, config: WatchConfig) -> impl Stream<Item = WatchEvent> + Send
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Docker, DockerError>> + Send + 'static,
{
    let watcher = Watcher {
        connect,
        enable_label: convert::enable_label(&config.label_prefix),
        resync: config.resync,
        backoff: Backoff::default(),
    };
    stream::unfold(
        (watcher, State::Connect),
        |(mut watcher, state)| async move {
            let (events, next) = watcher.step(state).await;
            Some((stream::iter(events), (watcher, next)))
        },
    )
    .flatten()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<EventMessage, BollardError>> + Send>>;

/// Where the watcher is; each variant holds only what is valid in it.
enum State {
    /// No client yet, or the last one failed: connect and subscribe.
    Connect,
    /// A step failed: wait, then connect again.
    Backoff(Duration),
    /// Subscribed (not yet polled): list everything as an `Init` batch.
    List { docker: Docker, events: EventStream },
    /// Listed: follow events until a failure or the resync deadline.
    Follow {
        docker: Docker,
        events: EventStream,
        /// Ids of containers with the enable label: network events name only the container id.
        opted_in: HashSet<String>,
        resync_at: Instant,
    },
}

struct Watcher<F> {
    connect: F,
    enable_label: String,
    resync: Duration,
    backoff: Backoff,
}

// === impl Watcher ===

impl<F, Fut> Watcher<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Docker, DockerError>>,
{
    /// Runs one state to completion: the events to emit and the next state.
    async fn step(&mut self, state: State) -> (Vec<WatchEvent>, State) {
        match state {
            State::Connect => {
                let subscribed = match (self.connect)().await {
                    Ok(docker) => subscribe(&docker).await.map(|events| (docker, events)),
                    Err(err) => Err(err),
                };
                match subscribed {
                    Ok((docker, events)) => (Vec::new(), State::List { docker, events }),
                    Err(err) => (Vec::new(), self.failed(&err)),
                }
            }
            State::Backoff(delay) => {
                sleep(delay).await;
                (Vec::new(), State::Connect)
            }
            State::List { docker, events } => match list(&docker, &self.enable_label).await {
                Ok((batch, opted_in)) => {
                    let now = Instant::now();
                    self.backoff.healthy(now);
                    let next = State::Follow {
                        docker,
                        events,
                        opted_in,
                        resync_at: now + self.resync,
                    };
                    (batch, next)
                }
                Err(err) => (Vec::new(), self.failed(&err)),
            },
            State::Follow {
                docker,
                mut events,
                mut opted_in,
                resync_at,
            } => {
                let next = tokio::select! {
                    next = events.next() => Some(next),
                    () = sleep_until(resync_at) => None,
                };
                let outcome = match next {
                    // Resync: a fresh subscription first, then the relist (State::List).
                    None => match subscribe(&docker).await {
                        Ok(events) => return (Vec::new(), State::List { docker, events }),
                        Err(err) => Err(err),
                    },
                    Some(Some(Ok(message))) => {
                        on_event(&docker, &self.enable_label, &mut opted_in, message).await
                    }
                    Some(Some(Err(source))) => Err(DockerError::EventStream { source }),
                    Some(None) => Err(DockerError::EventStreamEnded),
                };
                match outcome {
                    Ok(emitted) => {
                        let next = State::Follow {
                            docker,
                            events,
                            opted_in,
                            resync_at,
                        };
                        (emitted, next)
                    }
                    Err(err) => (Vec::new(), self.failed(&err)),
                }
            }
        }
    }

    /// Logs a failure and picks the delay before reconnecting.
    fn failed(&mut self, err: &DockerError) -> State {
        let delay = self.backoff.next_delay(Instant::now());
        tracing::warn!(
            error = %super::error::report(err),
            retry_in = ?delay,
            "docker watch interrupted; will reconnect and relist"
        );
        State::Backoff(delay)
    }
}

/// Lists every container, created and stopped ones included, as one `Init` batch.
async fn list(
    docker: &Docker,
    enable_label: &str,
) -> Result<(Vec<WatchEvent>, HashSet<String>), DockerError> {
    let options = ListContainersOptions {
        all: true,
        ..Default::default()
    };
    let summaries = docker
        .list_containers(Some(options))
        .await
        .map_err(|source| DockerError::ListContainers { source })?;
    let mut batch = Vec::with_capacity(summaries.len() + 2);
    let mut opted_in = HashSet::new();
    batch.push(WatchEvent::InitStart);
    for summary in &summaries {
        let labelled = summary
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(enable_label));
        if let Some(info) = convert::from_summary(summary, labelled) {
            if labelled {
                opted_in.insert(info.id.clone());
            }
            batch.push(WatchEvent::InitApply(info));
        }
    }
    batch.push(WatchEvent::InitDone);
    Ok((batch, opted_in))
}

/// Turns one Docker event into watch events. Opted-in containers are inspected (state and
/// networks must be exact), except at `create`; others are described from the event's
/// attributes alone.
async fn on_event(
    docker: &Docker,
    enable_label: &str,
    opted_in: &mut HashSet<String>,
    message: EventMessage,
) -> Result<Vec<WatchEvent>, DockerError> {
    let action = message.action.unwrap_or_default();
    let actor = message.actor.unwrap_or_default();
    let attributes = actor.attributes.unwrap_or_default();
    let id = match message.typ {
        Some(EventMessageTypeEnum::CONTAINER) => actor.id.unwrap_or_default(),
        // For network events the actor is the network; the container is an attribute.
        Some(EventMessageTypeEnum::NETWORK) => {
            attributes.get("container").cloned().unwrap_or_default()
        }
        _ => return Ok(Vec::new()),
    };
    if id.is_empty() {
        return Ok(Vec::new());
    }
    let is_container_event = message.typ == Some(EventMessageTypeEnum::CONTAINER);
    if is_container_event && action == "destroy" {
        opted_in.remove(&id);
        return Ok(vec![WatchEvent::Remove(id)]);
    }
    let labelled = if is_container_event {
        attributes.contains_key(enable_label)
    } else {
        opted_in.contains(&id)
    };
    if !labelled {
        return Ok(unlabelled(is_container_event, &id, &action, &attributes));
    }
    if is_container_event
        && action == "create"
        && let Some(info) = convert::from_event(&id, &action, &attributes)
    {
        // `docker run` starts the container right after creating it, and the start holds the
        // container's lock in the daemon until the process runs: an inspect now would wait for
        // all of it before the controller could even issue. The event carries the labels and
        // the name; networks come with the inspect at `start`.
        opted_in.insert(id);
        return Ok(vec![WatchEvent::Upsert(info)]);
    }
    let began = std::time::Instant::now();
    let inspected = ops::inspect(docker, &id).await;
    tracing::debug!(container = %id, %action, inspect_ms = began.elapsed().as_secs_f64() * 1e3, "inspect timing");
    match inspected {
        Ok(Some(info)) => {
            opted_in.insert(id);
            Ok(vec![WatchEvent::Upsert(info)])
        }
        Ok(None) => {
            opted_in.remove(&id);
            Ok(vec![WatchEvent::Remove(id)])
        }
        // A transient failure means the daemon is going away: reconnect and relist.
        Err(err) if err.is_transient() => Err(err),
        Err(err) => {
            tracing::warn!(error = %super::error::report(&err), "skipping a container event");
            Ok(Vec::new())
        }
    }
}

/// Events of containers that did not opt in: described cheaply, network changes ignored.
fn unlabelled(
    is_container_event: bool,
    id: &str,
    action: &str,
    attributes: &HashMap<String, String>,
) -> Vec<WatchEvent> {
    if !is_container_event {
        return Vec::new();
    }
    convert::from_event(id, action, attributes)
        .map(WatchEvent::Upsert)
        .into_iter()
        .collect()
}

/// Opens the event stream from the daemon's current time. The request is sent when the stream is
/// first polled, after the list; Docker replays buffered events since `since`, so whatever changes
/// between this call and the list is still delivered (possibly twice, which is harmless).
async fn subscribe(docker: &Docker) -> Result<EventStream, DockerError> {
    let since = daemon_now(docker).await?;
    let filters = HashMap::from([
        (
            "type".to_owned(),
            vec!["container".to_owned(), "network".to_owned()],
        ),
        (
            "event".to_owned(),
            CONTAINER_ACTIONS
                .iter()
                .chain(&NETWORK_ACTIONS)
                .map(|a| (*a).to_owned())
                .collect(),
        ),
    ]);
    let options = EventsOptions {
        since: Some(since),
        until: None,
        filters: Some(filters),
    };
    Ok(Box::pin(docker.events(Some(options))))
}

/// The daemon's clock as Docker's `since` format (`seconds.nanoseconds`). The daemon's clock, not
/// ours: over `tcp://` the two may differ by more than the time between subscribing and listing.
async fn daemon_now(docker: &Docker) -> Result<String, DockerError> {
    let info = docker
        .info()
        .await
        .map_err(|source| DockerError::ServerTime { source })?;
    let parsed = info.system_time.as_deref().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    let now = match parsed {
        Some(now) => now,
        None => {
            // Engines that do not report their clock: ours, a little early to be safe.
            tracing::debug!("the Docker daemon did not report its clock; using the local one");
            time::OffsetDateTime::now_utc() - Duration::from_secs(2)
        }
    };
    Ok(format!("{}.{:09}", now.unix_timestamp(), now.nanosecond()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_daemon_is_retried_with_growing_delays_and_nothing_is_emitted() {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&attempts);
        let connect = move || {
            seen.lock().unwrap().push(Instant::now());
            async {
                let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "no socket");
                Err(DockerError::NegotiateVersion {
                    source: gone.into(),
                })
            }
        };
        let mut events = Box::pin(watch(connect, WatchConfig::new("certdock")));
        let emitted = tokio::time::timeout(Duration::from_secs(20), events.next()).await;
        assert!(emitted.is_err(), "nothing may be emitted: {emitted:?}");

        let attempts = attempts.lock().unwrap().clone();
        let gaps: Vec<f64> = attempts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        assert!(gaps.len() >= 4, "{gaps:?}");
        for (gap, expected) in gaps.iter().zip([0.5, 1.0, 2.0, 4.0, 8.0]) {
            assert!((expected * 0.8..=expected * 1.2).contains(gap), "{gaps:?}");
        }
    }
}
