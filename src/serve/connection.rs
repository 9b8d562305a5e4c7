//! One connection: the header-read watchdog and the response bodies it waits for.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::Incoming;
use tower::Service;

use crate::Response;

/// What one connection's header-read watchdog looks at.
#[derive(Default)]
pub(crate) struct ConnActivity {
    /// Requests whose response has not finished (or been dropped) yet.
    in_flight: AtomicUsize,
    /// Bumped when a request head arrives and when a response finishes.
    events: AtomicU64,
    /// Set by the first HTTP/2 request: hyper's HTTP/2 keeps its own idle rules.
    http2: AtomicBool,
}

impl ConnActivity {
    /// Resolves once the connection has gone a whole `timeout` (checked every half) without a
    /// request head while no request of its was being answered.
    pub(crate) async fn stalled(&self, timeout: Duration) {
        let half = timeout / 2;
        let mut seen = self.events.load(Relaxed);
        let mut quiet_checks = 0;
        loop {
            tokio::time::sleep(half).await;
            if self.http2.load(Relaxed) {
                return std::future::pending().await;
            }
            let events = self.events.load(Relaxed);
            if self.in_flight.load(Relaxed) > 0 || events != seen {
                seen = events;
                quiet_checks = 0;
                continue;
            }
            quiet_checks += 1;
            if quiet_checks >= 2 {
                return;
            }
        }
    }
}

/// Counts a request in flight on its connection until its response body is done or dropped.
struct Answering(Arc<ConnActivity>);

impl Answering {
    fn start(activity: &Arc<ConnActivity>) -> Self {
        activity.in_flight.fetch_add(1, Relaxed);
        activity.events.fetch_add(1, Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.events.fetch_add(1, Relaxed);
    }
}

/// The app's service on one connection, reporting its requests to the watchdog.
#[derive(Clone)]
pub(crate) struct Watched<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<ConnActivity>,
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

    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        if req.version() == http::Version::HTTP_2 {
            self.activity.http2.store(true, Relaxed);
        }
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
        Poll::Ready(Ok(res.map(|body| TrackedBody {
            body,
            _in_flight: in_flight,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until hyper is done with it.
    pub(crate) struct TrackedBody {
        #[pin]
        body: Body,
        _in_flight: Option<Answering>,
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
