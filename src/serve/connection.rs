//! One connection: its watchdog (header-read and keep-alive idle timeouts), the socket that
//! reports reads to it, and the response bodies it waits for.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::Service;

use crate::Response;

/// Requests being answered across all connections of one server.
pub(crate) type InFlight = Arc<AtomicUsize>;

/// What one connection's watchdog looks at.
pub(crate) struct ConnActivity {
    /// Requests whose response has not finished (or been dropped) yet.
    in_flight: AtomicUsize,
    /// The server's count of the same.
    server_in_flight: InFlight,
    /// Bumped when a request head arrives and when a response finishes.
    events: AtomicU64,
    /// Bumped by every read that brings bytes from the client.
    reads: AtomicU64,
    /// Set by the first HTTP/2 request: hyper's HTTP/2 keeps its own idle rules.
    http2: AtomicBool,
}

impl ConnActivity {
    pub(crate) fn new(server_in_flight: &InFlight) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            server_in_flight: Arc::clone(server_in_flight),
            events: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            http2: AtomicBool::new(false),
        }
    }

    /// Resolves once the connection has gone `idle_timeout` without sending anything while
    /// none of its requests was being answered, or `header_timeout` since a request head began
    /// to arrive without it arriving whole. A zero timeout is off. Checked every half of the
    /// shorter timeout, so a connection is closed between one and one and a half timeouts
    /// after the moment that started its clock.
    pub(crate) async fn stalled(&self, header_timeout: Duration, idle_timeout: Duration) {
        let shortest = [header_timeout, idle_timeout]
            .into_iter()
            .filter(|t| !t.is_zero())
            .min();
        let Some(shortest) = shortest else {
            return std::future::pending().await;
        };
        let period = (shortest / 2).max(Duration::from_millis(1));
        // From the connection's start: bytes it sent before the first check began a head.
        let mut seen = (0, 0);
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            if self.http2.load(Relaxed) {
                return std::future::pending().await;
            }
            let events = self.events.load(Relaxed);
            if self.in_flight.load(Relaxed) > 0 || events != seen.0 {
                seen = (events, self.reads.load(Relaxed));
                since = tokio::time::Instant::now();
                continue;
            }
            // Bytes since the last request or response: a head is on its way.
            let limit = if self.reads.load(Relaxed) != seen.1 {
                header_timeout
            } else {
                idle_timeout
            };
            if !limit.is_zero() && since.elapsed() >= limit {
                return;
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection's socket, telling its watchdog when the client sends bytes.
    pub(crate) struct Counted<I> {
        #[pin]
        pub(crate) io: I,
        pub(crate) activity: Arc<ConnActivity>,
    }
}

impl<I: AsyncRead> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.reads.fetch_add(1, Relaxed);
        }
        result
    }
}

impl<I: AsyncWrite> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Counts a request in flight on its connection until its response body is done or dropped.
pub(crate) struct Answering(Arc<ConnActivity>);

impl Answering {
    fn start(activity: &Arc<ConnActivity>) -> Self {
        activity.in_flight.fetch_add(1, Relaxed);
        activity.server_in_flight.fetch_add(1, Relaxed);
        activity.events.fetch_add(1, Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.server_in_flight.fetch_sub(1, Relaxed);
        self.0.events.fetch_add(1, Relaxed);
    }
}

/// The app's service on one connection, reporting its requests to the watchdog.
#[derive(Clone)]
pub(crate) struct Watched<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<ConnActivity>,
    /// The peer, put on each request as axum's `ConnectInfo` (none on a Unix socket).
    pub(crate) peer: Option<SocketAddr>,
    /// Whether the connection is TLS, put on each request as [`Secure`](crate::Secure).
    pub(crate) tls: bool,
    /// Closed when the connection ends, put on each request.
    pub(crate) disconnect: super::Disconnect,
}

impl<S> Service<http::Request<Incoming>> for Watched<S>
where
    S: Service<http::Request<Incoming>, Response = Response, Error = Infallible>,
{
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = WatchedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Incoming>) -> Self::Future {
        if req.version() == http::Version::HTTP_2 {
            self.activity.http2.store(true, Relaxed);
        }
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        } else {
            req.extensions_mut()
                .insert(crate::client_ip::FromUnixSocket);
        }
        if self.tls {
            req.extensions_mut().insert(crate::Secure);
        }
        req.extensions_mut().insert(self.disconnect.clone());
        let in_flight = Answering::start(&self.activity);
        WatchedFuture {
            inner: self.inner.call(req),
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// The app's future; its response body carries the request's [`Answering`] on.
    pub(crate) struct WatchedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<Answering>,
    }
}

impl<F> Future for WatchedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<http::Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(res) = std::task::ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(res.map(|body| TrackedBody::new(body, in_flight))))
    }
}

/// A response body that keeps its request counted in flight until hyper is done with it.
pub(crate) type TrackedBody = crate::body::Holding<Option<Answering>>;
