//! The response body as one more boundary, `body`: compression, streaming transforms and
//! server-sent event producers do their work in `poll_frame`, after the request's future has
//! finished, so its polls are timed here.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::report::StackReport;
use crate::clock::ticks::{now, ticks_to_duration};

thread_local! {
    /// Ticks that bodies nested inside the one being polled spent in their polls (a stack
    /// inside a route of another wraps the body twice).
    static CHILD: Cell<u64> = const { Cell::new(0) };
}

pin_project_lite::pin_project! {
    /// A response body whose polls are timed and checked against the blocking threshold.
    pub(crate) struct TimedBody {
        #[pin]
        inner: Body,
        report: Arc<StackReport>,
        method: http::Method,
        route: Box<str>,
        exclusive: u64,
        done: bool,
        // Whether the live page records it (not the page's own responses).
        live: bool,
    }

    impl PinnedDrop for TimedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                this.report.body_finished(*this.exclusive, *this.live);
            }
        }
    }
}

impl TimedBody {
    pub(crate) fn wrap(
        body: Body,
        report: Arc<StackReport>,
        method: http::Method,
        route: &str,
        live: bool,
    ) -> Body {
        Body::new(Self {
            inner: body,
            report,
            method,
            route: route.into(),
            exclusive: 0,
            done: false,
            live,
        })
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let saved = CHILD.replace(0);
        let start = now();
        // After the head is sent a panic cannot become a 500: the body ends with an error
        // (hyper closes the connection) and the panic is logged under `body`.
        let poll = match catch_unwind(AssertUnwindSafe(|| this.inner.poll_frame(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                tracing::error!(
                    middleware = "body",
                    panic = crate::stack::panic_message(&*payload),
                    "panic in the response body; the response was cut short"
                );
                Poll::Ready(Some(Err(axum::Error::new("the response body panicked"))))
            }
        };
        let total = now().saturating_sub(start);
        let exclusive = total.saturating_sub(CHILD.get());
        CHILD.set(saved + total);
        *this.exclusive += exclusive;
        if exclusive >= this.report.threshold {
            this.report.record_blocking(
                this.report.body_index(),
                1,
                ticks_to_duration(exclusive),
                this.method.as_str(),
                this.route,
            );
        }
        if matches!(poll, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) && !*this.done {
            *this.done = true;
            this.report.body_finished(*this.exclusive, *this.live);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
