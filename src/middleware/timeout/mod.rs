//! [`Timeout`]: the rest of the stack gets this long, then it is cancelled (its future dropped)
//! and the client gets `503 {"detail":"Request timed out"}` with `Retry-After`.
//!
//! The status is configurable: 504 suits a gateway in front of slower services. Outer
//! middlewares (request id, access log, CORS) see the 503 like any other response, and the
//! blocking report keeps what the cancelled part did.
//!
//! ```
//! use callnext::middleware::Timeout;
//! use callnext::{Entry, Stack, TestClient};
//! use axum::{routing::get, Router};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let app = Router::new().route("/slow", get(|| async {
//!     tokio::time::sleep(Duration::from_secs(60)).await;
//!     "late"
//! }));
//! let stack = Stack::new().middleware(Timeout::new(Duration::from_secs(30)));
//! let res = TestClient::new(stack.service(app)).get("/slow").await;
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.text(), r#"{"detail":"Request timed out"}"#);
//! assert_eq!(res.header("retry-after"), Some("1"));
//! # });
//! ```
//!
//! Behind a gateway, as 504, with a longer `Retry-After`:
//!
//! ```
//! use callnext::middleware::Timeout;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//! use http::StatusCode;
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! let timeout = Timeout::new(Duration::from_millis(100))
//!     .status(StatusCode::GATEWAY_TIMEOUT)
//!     .unwrap()
//!     .retry_after(Duration::from_secs(5));
//! let app = Router::new().route("/", get(|| async { std::future::pending::<&str>().await }));
//! let res = TestClient::new(Stack::new().middleware(timeout).service(app)).get("/").await;
//! assert_eq!(res.status(), 504);
//! assert_eq!(res.header("retry-after"), Some("5"));
//! # });
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

use std::time::Duration;

use axum::response::IntoResponse;
use http::{HeaderValue, StatusCode};

use crate::{ConfigError, HttpError, Middleware, Next, Request, Response};

/// Cancels the rest of the stack after a time; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct Timeout {
    after: Duration,
    status: StatusCode,
    retry_after: HeaderValue,
}

impl Timeout {
    /// After `after`, answer 503 with `Retry-After: 1`.
    pub fn new(after: Duration) -> Self {
        Self {
            after,
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: HeaderValue::from_static("1"),
        }
    }

    /// The status of the answer: 503 (the default) or 504.
    ///
    /// # Errors
    ///
    /// Any other status.
    pub fn status(mut self, status: StatusCode) -> Result<Self, ConfigError> {
        if status != StatusCode::SERVICE_UNAVAILABLE && status != StatusCode::GATEWAY_TIMEOUT {
            return Err(ConfigError::invalid(
                "status",
                format!("expected 503 or 504, got {}", status.as_u16()),
            ));
        }
        self.status = status;
        Ok(self)
    }

    /// The `Retry-After` of the answer, in whole seconds (at least 1). Defaults to 1 s.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = HeaderValue::from(after.as_secs().max(1));
        self
    }
}

impl Middleware for Timeout {
    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new()
            .kind("timeout")
            .answers_early()
    }

    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        match tokio::time::timeout(self.after, next.run(req)).await {
            Ok(res) => res,
            Err(_) => {
                tracing::warn!(method = %crate::Printable::new(method.as_str()), path = %crate::Printable::new(&path), after = ?self.after, "request timed out; cancelled");
                let mut res = HttpError::new(self.status, "Request timed out").into_response();
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, self.retry_after.clone());
                res.extensions_mut()
                    .insert(crate::AnsweredBy::new("timeout".into()));
                res
            }
        }
    }
}
