//! `/health/live` and `/health/ready`, and the [`Readiness`] switch the server turns off when
//! it begins to shut down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::Serialize;

/// Whether the process takes new work: on when made, off once shutdown has begun (callnext's
/// server turns it off at the signal), so `/health/ready` answers 503 and a load balancer
/// stops sending. Clones share one switch.
///
/// ```
/// use callnext::admin::Readiness;
///
/// let ready = Readiness::new();
/// assert!(ready.is_ready());
/// ready.set(false);
/// assert!(!ready.clone().is_ready());
/// ```
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// A switch that is on (ready).
    pub fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    /// Turns readiness on or off.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether it is on.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

pub(super) async fn live() -> Response {
    Json(Health { status: "ok" }).into_response()
}

pub(super) fn ready(readiness: &Readiness) -> Response {
    if readiness.is_ready() {
        Json(Health { status: "ok" }).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "shutting down",
            }),
        )
            .into_response()
    }
}
