//! The open connections of one listener: a cap on how many, which one makes room when a new one
//! arrives at the cap, and the request-body deadline.
//!
//! A connection is *evictable* while nothing is being answered on it: during its handshake,
//! while idle between requests, and while its request body is still arriving. At the cap an
//! evictable connection is closed for the newcomer: the oldest one of the address holding the
//! most connections, else the oldest of any address. So clients that stall (a flood of
//! half-open handshakes, headers without a body) push out their own connections first, then
//! each other, never the clients being answered. When nothing is evictable the listener stops
//! accepting until a connection ends (the kernel's backlog holds newcomers meanwhile).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;

/// The open connections of one listener.
pub(crate) struct Conns {
    max: usize,
    open: Mutex<Open>,
    /// Signalled whenever a connection ends: an accept waiting at the cap tries again.
    freed: Notify,
}

#[derive(Default)]
struct Open {
    /// Ids grow with age, so the first evictable entry is the oldest.
    next_id: u64,
    by_id: BTreeMap<u64, Arc<Slot>>,
    /// The ids of each client address's connections.
    by_addr: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Open {
    fn insert(&mut self, addr: IpAddr) -> (u64, Arc<Slot>) {
        let id = self.next_id;
        self.next_id += 1;
        let slot = Arc::new(Slot {
            addr,
            ..Slot::default()
        });
        self.by_id.insert(id, slot.clone());
        self.by_addr.entry(addr).or_default().insert(id);
        (id, slot)
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let slot = self.by_id.remove(&id)?;
        if let Some(ids) = self.by_addr.get_mut(&slot.addr) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_addr.remove(&slot.addr);
            }
        }
        Some(slot)
    }

    /// The connection to close for a newcomer: the oldest evictable one of the address with
    /// the most connections, else the oldest evictable one.
    fn victim(&self) -> Option<u64> {
        let evictable = |id: &u64| self.by_id.get(id).is_some_and(|s| s.evictable());
        let heaviest = self.by_addr.values().max_by_key(|ids| ids.len());
        heaviest
            .and_then(|ids| ids.iter().copied().find(evictable))
            .or_else(|| self.by_id.keys().copied().find(evictable))
    }
}

/// One connection's state, shared by its task, its requests and their bodies.
pub(crate) struct Slot {
    /// The client's address.
    addr: IpAddr,
    /// A request is being answered (its body, if any, has fully arrived).
    answering: AtomicBool,
    /// Signalled (with a stored permit, so never lost) when the connection must close.
    close: Notify,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            addr: IpAddr::from([0, 0, 0, 0]),
            answering: AtomicBool::new(false),
            close: Notify::new(),
        }
    }
}

impl Slot {
    /// Completes when the listener wants this connection closed to make room.
    pub(crate) async fn evicted(&self) {
        self.close.notified().await;
    }

    /// Between a request's complete body and its answer, the connection is not evictable.
    pub(crate) fn set_answering(&self, answering: bool) {
        self.answering.store(answering, Ordering::Release);
    }

    fn evictable(&self) -> bool {
        !self.answering.load(Ordering::Acquire)
    }
}

/// A connection's place among the open ones; dropping it frees the place.
pub(crate) struct Admitted {
    conns: Arc<Conns>,
    id: u64,
    pub(crate) slot: Arc<Slot>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        // Already gone when it was evicted.
        self.conns.lock().remove(self.id);
        self.conns.freed.notify_one();
    }
}

impl Conns {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::default(),
            freed: Notify::new(),
        })
    }

    /// A place for a connection just accepted from `addr`: a free one, else an evictable
    /// connection's (closed now, see the module doc), else the first to be freed.
    pub(crate) async fn admit(self: &Arc<Self>, addr: IpAddr) -> Admitted {
        loop {
            // Registered before looking, so a place freed in between is not missed.
            let freed = self.freed.notified();
            if let Some(admitted) = self.try_admit(addr) {
                return admitted;
            }
            freed.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // A poisoned lock only means a panic elsewhere; the maps themselves stay consistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_admit(self: &Arc<Self>, addr: IpAddr) -> Option<Admitted> {
        let mut open = self.lock();
        if open.by_id.len() >= self.max {
            let victim = open.victim()?;
            if let Some(slot) = open.remove(victim) {
                slot.close.notify_one();
                tracing::debug!(
                    max = self.max,
                    client = %slot.addr,
                    "connection cap reached: closed an idle connection of the busiest address"
                );
            }
        }
        let (id, slot) = open.insert(addr);
        Some(Admitted {
            conns: self.clone(),
            id,
            slot,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

/// The body did not arrive within the body deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails with [`BodyTimeout`] once its deadline passes, and marks its
/// connection as being answered once it has fully arrived.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
    slot: Arc<Slot>,
}

impl<B: Body> DeadlineBody<B> {
    pub(crate) fn new(inner: B, limit: Duration, slot: Arc<Slot>) -> Self {
        // A bodiless request (GET, or an empty POST) is being answered at once.
        slot.set_answering(inner.is_end_stream());
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            slot,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.slot.set_answering(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.slot.set_answering(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error (of a body read, through any wrapping) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let conns = Conns::new(2);
        let first = conns.admit(A).await;
        let second = conns.admit(A).await;
        second.slot.set_answering(true);
        let third = conns.admit(A).await;
        assert_eq!(conns.len(), 2);
        // The first (idle) was told to close; the second (being answered) was not.
        tokio::time::timeout(Duration::from_secs(1), first.slot.evicted())
            .await
            .expect("the oldest idle connection is evicted");
        drop(first);
        assert_eq!(
            conns.len(),
            2,
            "an evicted connection's place is not freed twice"
        );
        drop(third);
        assert_eq!(conns.len(), 1);
    }

    #[tokio::test]
    async fn at_the_cap_with_every_connection_answering_admission_waits_for_one_to_end() {
        let conns = Conns::new(1);
        let busy = conns.admit(A).await;
        busy.slot.set_answering(true);
        let waiting = tokio::spawn({
            let conns = conns.clone();
            async move { conns.admit(A).await.id }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(busy);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("admitted once a place is free")
            .unwrap();
    }

    #[tokio::test]
    async fn a_flooding_address_pushes_out_its_own_connections_not_an_older_one_of_another() {
        let conns = Conns::new(4);
        let other = conns.admit(B).await;
        let mut flood = Vec::new();
        for _ in 0..20 {
            flood.push(conns.admit(A).await);
        }
        assert_eq!(conns.len(), 4);
        let untouched = tokio::time::timeout(Duration::from_millis(50), other.slot.evicted()).await;
        assert!(
            untouched.is_err(),
            "the other address's idle connection stays"
        );
        // Only the newest three of the flood are still open.
        let open: Vec<bool> = flood
            .iter()
            .map(|a| conns.lock().by_id.contains_key(&a.id))
            .collect();
        assert_eq!(open.iter().filter(|o| **o).count(), 3);
        assert!(open[17..].iter().all(|o| *o));
        drop(flood);
        assert_eq!(conns.len(), 1);
        assert!(
            !conns.lock().by_addr.contains_key(&A),
            "no address is kept empty"
        );
    }

    /// A body whose sender went quiet: never a frame, never the end.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = axum::BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_at_its_deadline() {
        let slot = Arc::new(Slot::default());
        let body = DeadlineBody::new(Stalled, Duration::from_secs(5), slot.clone());
        assert!(slot.evictable(), "a body still arriving");
        let err = axum::body::to_bytes(axum::body::Body::new(body), 1024)
            .await
            .expect_err("the deadline fails the body");
        assert!(is_body_timeout(&err), "{err}");
    }
}
