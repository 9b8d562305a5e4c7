//! A deadline on reading a request body: the whole body within a time that grows with what has
//! arrived (`body_read_timeout`, plus a second per `body_min_rate` bytes, as Apache's
//! `mod_reqtimeout` does), so a client trickling a byte now and then cannot hold a connection
//! slot for as long as it likes. Past it, the app's read fails and the answer is 408 with the
//! connection closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::{Request, Response};

/// The server's rule for request bodies, put on each request it serves (the stack applies it
/// when it takes the body).
#[derive(Debug, Clone)]
pub(crate) struct BodyDeadline {
    timeout: Duration,
    /// Bytes a second that extend the deadline (0: none).
    min_rate: u64,
    /// Set when the deadline passed: the answer becomes a 408.
    pub(crate) timed_out: Arc<AtomicBool>,
}

impl BodyDeadline {
    pub(crate) fn new(timeout: Duration, min_rate: u64) -> Self {
        Self {
            timeout,
            min_rate,
            timed_out: Arc::default(),
        }
    }
}

/// Puts the deadline the server set (if any) on the request's body, unless the body is empty.
pub(crate) fn apply(req: &mut Request) {
    let Some(rule) = req.extensions().get::<BodyDeadline>().cloned() else {
        return;
    };
    if http_body::Body::is_end_stream(req.body()) {
        return;
    }
    let body = std::mem::take(req.body_mut());
    *req.body_mut() = Body::new(Deadlined {
        body,
        started: Instant::now(),
        received: 0,
        sleep: None,
        rule,
    });
}

/// The answer when a body missed its deadline: 408, and the connection closed (HTTP/1).
pub(crate) fn timed_out() -> Response {
    let mut res = axum::response::IntoResponse::into_response(crate::HttpError::new(
        http::StatusCode::REQUEST_TIMEOUT,
        "Request Timeout",
    ));
    res.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    res
}

/// The body read past its deadline.
#[derive(Debug)]
struct TooSlow;

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for TooSlow {}

pin_project_lite::pin_project! {
    struct Deadlined {
        #[pin]
        body: Body,
        started: Instant,
        received: u64,
        // Made on the first wait (a body that is already here costs no timer).
        sleep: Option<Pin<Box<Sleep>>>,
        rule: BodyDeadline,
    }
}

impl Deadlined {
    fn deadline(started: Instant, received: u64, rule: &BodyDeadline) -> Instant {
        let earned = match rule.min_rate {
            0 => Duration::ZERO,
            rate => Duration::from_millis(received.saturating_mul(1000) / rate),
        };
        started + rule.timeout + earned
    }
}

impl http_body::Body for Deadlined {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        match this.body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    if let Some(sleep) = this.sleep {
                        let at = Self::deadline(*this.started, *this.received, this.rule);
                        sleep.as_mut().reset(at);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let at = Self::deadline(*this.started, *this.received, this.rule);
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.rule.timed_out.store(true, Ordering::Relaxed);
                    tracing::info!(
                        received = *this.received,
                        "request body too slow; answered 408"
                    );
                    return Poll::Ready(Some(Err(axum::Error::new(TooSlow))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
