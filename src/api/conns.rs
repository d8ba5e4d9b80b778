//! The open connections of one listener: a cap on how many, which one makes room when a new one
//! arrives at the cap, and the request-body deadline.
//!
//! A connection is *evictable* while nothing is being answered on it: during its handshake,
//! while idle between requests, and while its request body is still arriving. At the cap the
//! oldest evictable connection is closed for the newcomer, so clients that stall (a flood of
//! half-open handshakes, headers without a body) push out each other, not the clients being
//! answered. When nothing is evictable the listener stops accepting until a connection ends
//! (the kernel's backlog holds newcomers meanwhile).

use std::collections::BTreeMap;
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
}

/// One connection's state, shared by its task, its requests and their bodies.
#[derive(Default)]
pub(crate) struct Slot {
    /// A request is being answered (its body, if any, has fully arrived).
    answering: AtomicBool,
    /// Signalled (with a stored permit, so never lost) when the connection must close.
    close: Notify,
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
        if let Ok(mut open) = self.conns.open.lock() {
            open.by_id.remove(&self.id);
        }
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

    /// A place for a connection just accepted: a free one, else the oldest evictable
    /// connection's (closed now), else the first to be freed.
    pub(crate) async fn admit(self: &Arc<Self>) -> Admitted {
        loop {
            // Registered before looking, so a place freed in between is not missed.
            let freed = self.freed.notified();
            if let Some(admitted) = self.try_admit() {
                return admitted;
            }
            freed.await;
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Admitted> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.by_id.len() >= self.max {
            let oldest = open
                .by_id
                .iter()
                .find(|(_, s)| s.evictable())
                .map(|(id, _)| *id)?;
            if let Some(slot) = open.by_id.remove(&oldest) {
                slot.close.notify_one();
                tracing::debug!(
                    max = self.max,
                    "connection cap reached: closed the oldest idle connection"
                );
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let slot = Arc::new(Slot::default());
        open.by_id.insert(id, slot.clone());
        Some(Admitted {
            conns: self.clone(),
            id,
            slot,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().map(|o| o.by_id.len()).unwrap_or_default()
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

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let conns = Conns::new(2);
        let first = conns.admit().await;
        let second = conns.admit().await;
        second.slot.set_answering(true);
        let third = conns.admit().await;
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
        let busy = conns.admit().await;
        busy.slot.set_answering(true);
        let waiting = tokio::spawn({
            let conns = conns.clone();
            async move { conns.admit().await.id }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(busy);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("admitted once a place is free")
            .unwrap();
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
