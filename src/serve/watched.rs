//! [`Watched`]: the app's service on one connection, refusing ambiguous HTTP/1 requests,
//! putting the connection's facts on each request and counting it in flight until its
//! response body is done.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use tower::Service;

use super::connection::{Answering, ConnActivity};
use crate::Response;

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
    /// The request body rule (`None`: off), put on each request.
    pub(crate) body_deadline: Option<(Duration, u64)>,
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
        if let Some(reason) = ambiguous(&req) {
            tracing::info!(peer = ?self.peer, reason, "request refused with 400; closing");
            let mut res = axum::response::IntoResponse::into_response(crate::HttpError::new(
                http::StatusCode::BAD_REQUEST,
                reason,
            ));
            res.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            let in_flight = Answering::start(&self.activity);
            return WatchedFuture {
                inner: None,
                refused: Some(res),
                in_flight: Some(in_flight),
                timed_out: None,
            };
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
        // A request without a body (most GETs) has nothing to time: no rule, no flag.
        let has_body = !http_body::Body::is_end_stream(req.body());
        let timed_out = self
            .body_deadline
            .filter(|_| has_body)
            .map(|(timeout, min_rate)| {
                let rule = super::body_deadline::BodyDeadline::new(timeout, min_rate);
                let flag = Arc::clone(&rule.timed_out);
                req.extensions_mut().insert(rule);
                flag
            });
        let in_flight = Answering::start(&self.activity);
        WatchedFuture {
            inner: Some(self.inner.call(req)),
            refused: None,
            in_flight: Some(in_flight),
            timed_out,
        }
    }
}

/// What makes an HTTP/1 request's length or host ambiguous, if anything (RFC 9112 §3.2 and
/// §6.1): such a request is answered 400 and its connection closed with its body unread, so
/// nothing hidden in the body is ever taken for a request. HTTP/2 frames its own messages.
fn ambiguous(req: &http::Request<Incoming>) -> Option<&'static str> {
    use http::{header, Version};
    let version = req.version();
    if version != Version::HTTP_11 && version != Version::HTTP_10 {
        return None;
    }
    // One pass over the few headers a request has costs less than two hashed lookups.
    let (mut hosts, mut transfer_encoding) = (0usize, false);
    for name in req.headers().iter().map(|(name, _)| name) {
        if name == header::HOST {
            hosts += 1;
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
        }
    }
    if transfer_encoding {
        let encodings = req.headers().get_all(header::TRANSFER_ENCODING);
        if version == Version::HTTP_10 {
            return Some("Transfer-Encoding is not allowed in an HTTP/1.0 request");
        }
        let mut chunked = 0;
        let mut last_chunked = false;
        for value in encodings {
            let Ok(value) = value.to_str() else {
                return Some("Transfer-Encoding must end with chunked, once");
            };
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                last_chunked = coding.eq_ignore_ascii_case("chunked");
                chunked += usize::from(last_chunked);
            }
        }
        if chunked != 1 || !last_chunked {
            return Some("Transfer-Encoding must end with chunked, once");
        }
    }
    if version == Version::HTTP_11 && hosts != 1 {
        return Some("An HTTP/1.1 request needs exactly one Host header");
    }
    None
}

pin_project_lite::pin_project! {
    /// The app's future; its response body carries the request's [`Answering`] on.
    pub(crate) struct WatchedFuture<F> {
        #[pin]
        inner: Option<F>,
        // The answer to a request refused before the app saw it.
        refused: Option<Response>,
        in_flight: Option<Answering>,
        // Set when the request's body missed its deadline: the answer is a 408.
        timed_out: Option<Arc<AtomicBool>>,
    }
}

impl<F> Future for WatchedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<http::Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match (this.refused.take(), this.inner.as_pin_mut()) {
            (Some(res), _) => res,
            (None, Some(inner)) => match std::task::ready!(inner.poll(cx)) {
                Ok(res) => res,
            },
            (None, None) => unreachable!("polled after completion"),
        };
        let res = if this
            .timed_out
            .as_ref()
            .is_some_and(|flag| flag.load(Relaxed))
        {
            super::body_deadline::timed_out()
        } else {
            res
        };
        let in_flight = this.in_flight.take();
        if res.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // The socket goes to the upgrade, with its slot.
            if let Some(Answering(activity)) = &in_flight {
                activity.slot.mark_upgraded();
            }
        }
        Poll::Ready(Ok(res.map(|body| TrackedBody::new(body, in_flight))))
    }
}

/// A response body that keeps its request counted in flight until hyper is done with it.
pub(crate) type TrackedBody = crate::body::Holding<Option<Answering>>;
