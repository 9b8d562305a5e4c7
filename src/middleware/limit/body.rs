//! [`BodyLimit`]: request bodies above a size get `413 {"detail":"Request body too large"}`,
//! whether `Content-Length` says so up front or a chunked body crosses the limit mid-stream;
//! the handler never sees a truncated body (its read fails instead).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::Limited;

use crate::{ConfigError, Flow, Hook, HttpError, Request, Response};

/// Limits request bodies; see the [module docs](super).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct BodyLimit {
    max: usize,
}

impl BodyLimit {
    /// Bodies of at most `max` bytes.
    ///
    /// # Errors
    ///
    /// `max` of zero.
    pub fn new(max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::invalid(
                "max",
                "must be at least 1 byte (use a route without a body instead)",
            ));
        }
        Ok(Self { max })
    }

    /// The limit in bytes.
    pub fn max(&self) -> usize {
        self.max
    }
}

fn too_large() -> Response {
    HttpError::payload_too_large().into_response()
}

impl Hook for BodyLimit {
    /// Set when the body crossed the limit while being read.
    type State = Option<Arc<AtomicBool>>;

    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new()
            .kind("body_limit")
            .answers_early()
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Self::State> {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared {
            if length > self.max as u64 {
                tracing::debug!(length, max = self.max, "request body too large");
                return Flow::Respond(too_large());
            }
            // Within the limit, and hyper never delivers more than Content-Length says.
            return Flow::Continue(None);
        }
        if http_body::Body::is_end_stream(req.body()) {
            return Flow::Continue(None);
        }
        let crossed = Arc::new(AtomicBool::new(false));
        let body = std::mem::take(req.body_mut());
        *req.body_mut() = Body::new(Watch {
            inner: Limited::new(body, self.max),
            crossed: Arc::clone(&crossed),
        });
        Flow::Continue(Some(crossed))
    }

    fn on_response<'a>(&'a self, crossed: Self::State, res: &'a mut Response) -> Flow<'a> {
        if crossed.is_some_and(|c| c.load(Ordering::Acquire)) {
            tracing::debug!(max = self.max, "request body crossed the limit mid-stream");
            // Whatever the reader made of the failed read (axum's plain-text 413, a 400), the
            // answer is callnext's 413.
            *res = too_large();
        }
        Flow::Continue(())
    }
}

pin_project_lite::pin_project! {
    /// A limited body that remembers whether it crossed the limit.
    struct Watch {
        #[pin]
        inner: Limited<Body>,
        crossed: Arc<AtomicBool>,
    }
}

impl http_body::Body for Watch {
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tower::BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Err(err))) = &polled {
            if err.is::<http_body_util::LengthLimitError>() {
                this.crossed.store(true, Ordering::Release);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
