//! A lingering close: when hyper closes a connection, the client may still be sending (a body
//! over the limit is answered 413 before it is read). A socket closed with unread data answers
//! what arrives next with a reset, and the client's next write fails before it reads the
//! answer (curl reports a send error, not the 413). So, as nginx does, the server closes its
//! side first (TLS close_notify, TCP FIN: the client sees the whole answer and its end) and then
//! reads and drops what is still coming, for a bounded time and amount, before it lets go.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a closed connection is read for at most.
const LINGER_TIME: Duration = Duration::from_secs(1);
/// How much is read and dropped at most (a body up to this size arrives whole).
const LINGER_BYTES: usize = 1024 * 1024;

/// `S` with a lingering [`AsyncWrite::poll_shutdown`]; reads and writes pass through.
pub(super) struct Lingering<S> {
    inner: S,
    state: State,
}

enum State {
    Open,
    /// Our side is closed; reading what is left until the deadline or the limit.
    Draining {
        until: Pin<Box<Sleep>>,
        read: usize,
    },
    Done,
}

impl<S> Lingering<S> {
    pub(super) fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Open,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.state = State::Draining {
                        until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        read: 0,
                    };
                }
                State::Draining { until, read } => {
                    if until.as_mut().poll(cx).is_ready() || *read >= LINGER_BYTES {
                        this.state = State::Done;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => *read += buf.filled().len(),
                        // The client's end, or a reset: nothing more to wait for.
                        _ => this.state = State::Done,
                    }
                }
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_close_ends_its_writes_then_drops_what_comes_until_the_end_or_a_bound() {
        // The client's end comes: done at once, after it saw our end.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut ours = Lingering::new(ours);
        ours.write_all(b"413").await.unwrap();
        let closing = tokio::spawn(async move { ours.shutdown().await });
        let mut got = Vec::new();
        theirs.write_all(b"rest of a body").await.unwrap();
        theirs.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"413", "the answer, then our end");
        drop(theirs);
        closing.await.unwrap().unwrap();

        // A client that keeps its side open: let go after the time bound.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut ours = Lingering::new(ours);
        let started = tokio::time::Instant::now();
        let closing = tokio::spawn(async move { ours.shutdown().await });
        theirs.write_all(b"more").await.unwrap();
        closing.await.unwrap().unwrap();
        assert_eq!(started.elapsed(), LINGER_TIME);

        // A client that sends without end: let go after the byte bound, well before the time.
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let mut ours = Lingering::new(ours);
        let started = tokio::time::Instant::now();
        let closing = tokio::spawn(async move { ours.shutdown().await });
        let flood = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            while theirs.write_all(&chunk).await.is_ok() {}
        });
        closing.await.unwrap().unwrap();
        assert!(started.elapsed() < LINGER_TIME);
        flood.abort();
    }
}
