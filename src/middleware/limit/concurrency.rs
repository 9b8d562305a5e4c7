//! [`ConcurrencyLimit`]: at most N requests inside the rest of the stack at once; the others
//! wait in a bounded queue or are shed with `503 {"detail":"Service Unavailable"}` and
//! `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::response::IntoResponse;
use http::{HeaderValue, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ConfigError, HttpError, Middleware, Next, Request, Response};

/// Limits the requests inside the rest of the stack; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct ConcurrencyLimit {
    permits: Arc<Semaphore>,
    max: usize,
    queue: usize,
    waiting: Arc<AtomicUsize>,
    retry_after: HeaderValue,
    /// `callnext_concurrency_in_flight`, once the stack records into a metrics registry.
    #[cfg(feature = "prometheus")]
    pub(crate) gauge: Arc<std::sync::OnceLock<metrics::Gauge>>,
}

impl ConcurrencyLimit {
    /// At most `max` requests inside; with no queue, the next one is shed at once.
    ///
    /// # Errors
    ///
    /// `max` of zero (every request would be shed).
    pub fn new(max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::invalid(
                "max",
                "must be at least 1 (every request would be shed)",
            ));
        }
        Ok(Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            queue: 0,
            waiting: Arc::default(),
            retry_after: HeaderValue::from_static("1"),
            #[cfg(feature = "prometheus")]
            gauge: Arc::default(),
        })
    }

    /// Let up to `queue` requests wait for a place (in arrival order) before shedding.
    /// Defaults to 0.
    pub fn queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// The `Retry-After` of a shed request, in seconds (at least 1). Defaults to 1.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = HeaderValue::from(secs.max(1));
        self
    }

    /// Requests inside now.
    pub fn in_flight(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    fn shed(&self) -> Response {
        let mut res =
            HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
        res.headers_mut()
            .insert(http::header::RETRY_AFTER, self.retry_after.clone());
        res.extensions_mut()
            .insert(crate::AnsweredBy::new("concurrency".into()));
        res
    }

    async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Some(permit);
        }
        // A place in the queue, or none.
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _leave = Leave(&self.waiting);
        if queued >= self.queue {
            return None;
        }
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Middleware for ConcurrencyLimit {
    fn capabilities(&self) -> crate::battery::Capabilities {
        let caps = crate::battery::Capabilities::new()
            .kind("concurrency")
            .answers_early();
        #[cfg(feature = "prometheus")]
        let caps = {
            let gauge = Arc::clone(&self.gauge);
            caps.metrics(move |metrics, stack, entry| {
                let labels = vec![
                    ("stack", stack.to_owned()),
                    ("middleware", entry.to_owned()),
                ];
                let _ = gauge.set(metrics.gauge(crate::metrics::CONCURRENCY_IN_FLIGHT, &labels));
            })
        };
        caps
    }

    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        let Some(permit) = self.permit().await else {
            tracing::debug!(
                max = self.max,
                queue = self.queue,
                "over the concurrency limit; shed"
            );
            return self.shed();
        };
        let place = Place::take(permit, self);
        let mut res = next.run(req).await;
        // The place is held until the body has been sent (or dropped): a stream is still
        // inside.
        crate::battery::observe(&mut res, move |_| drop(place));
        res
    }
}

/// A request's place inside: its permit, counted in the in-flight gauge while held.
struct Place {
    _permit: OwnedSemaphorePermit,
    #[cfg(feature = "prometheus")]
    gauge: Option<metrics::Gauge>,
}

impl Place {
    fn take(permit: OwnedSemaphorePermit, limit: &ConcurrencyLimit) -> Self {
        #[cfg(not(feature = "prometheus"))]
        let _ = limit;
        #[cfg(feature = "prometheus")]
        let gauge = limit.gauge.get().cloned();
        #[cfg(feature = "prometheus")]
        if let Some(gauge) = &gauge {
            gauge.increment(1.0);
        }
        Self {
            _permit: permit,
            #[cfg(feature = "prometheus")]
            gauge,
        }
    }
}

#[cfg(feature = "prometheus")]
impl Drop for Place {
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            gauge.decrement(1.0);
        }
    }
}
