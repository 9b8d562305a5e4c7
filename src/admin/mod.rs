//! The admin router: Prometheus metrics, `/health/live` and `/health/ready`.
//!
//! It is an ordinary axum `Router`. Merge it into the app, behind the stack, so the stack's
//! middlewares (auth, allow-lists, rate limits) protect it, or serve it on a listener of its
//! own (an internal port):
//!
//! ```
//! use callnext::admin::{Admin, Readiness};
//! use callnext::metrics::Metrics;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let metrics = Metrics::new();
//! let readiness = Readiness::new();
//! let admin = Admin::new().metrics(&metrics).readiness(&readiness);
//! let app = Router::new().route("/", get(|| async { "hi" })).merge(admin.router());
//! let client = TestClient::new(Stack::new().metrics(&metrics).service(app));
//!
//! assert_eq!(client.get("/health/live").await.text(), r#"{"status":"ok"}"#);
//! assert_eq!(client.get("/health/ready").await.status(), 200);
//! readiness.set(false); // what callnext's server does when shutdown begins
//! assert_eq!(client.get("/health/ready").await.status(), 503);
//! assert!(client.get("/metrics").await.text().contains("http_requests_total"));
//! # });
//! ```

mod health;
pub mod live;

use axum::routing::get;
use axum::Router;

pub use health::Readiness;
pub use live::{LivePage, LivePageBuilder};

use crate::ConfigError;

/// Builds the admin router. Metrics are off until [`Admin::metrics`] is given a registry.
#[derive(Debug, Clone)]
#[must_use]
pub struct Admin {
    #[cfg(feature = "prometheus")]
    metrics: Option<crate::metrics::Metrics>,
    metrics_path: String,
    live_path: String,
    ready_path: String,
    readiness: Readiness,
    live: Option<LivePage>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            #[cfg(feature = "prometheus")]
            metrics: None,
            metrics_path: "/metrics".to_owned(),
            live_path: "/health/live".to_owned(),
            ready_path: "/health/ready".to_owned(),
            readiness: Readiness::new(),
            live: None,
        }
    }
}

impl Admin {
    /// `/health/live` and `/health/ready`, no metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves this registry's Prometheus text at the metrics path (`/metrics` by default).
    #[cfg(feature = "prometheus")]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Where the metrics are served.
    ///
    /// # Errors
    ///
    /// A path that does not start with `/`:
    ///
    /// ```
    /// use callnext::admin::Admin;
    ///
    /// let err = Admin::new().metrics_path("metrics").unwrap_err();
    /// assert_eq!(err.to_string(), "invalid `metrics_path`: must start with `/` or be `off`, got `metrics`");
    /// ```
    pub fn metrics_path(mut self, path: &str) -> Result<Self, ConfigError> {
        self.metrics_path = checked_path("metrics_path", path)?;
        Ok(self)
    }

    /// The switch `/health/ready` reports; give the server the same one
    /// ([`Server::readiness`](crate::serve::Server::readiness)).
    pub fn readiness(mut self, readiness: &Readiness) -> Self {
        self.readiness = readiness.clone();
        self
    }

    /// Serves the live stack page and its API under the page's path (`/_callnext/`); see
    /// [`live`]. The stacks it shows are given the same page ([`Stack::live`](crate::Stack::live)).
    pub fn live_page(mut self, page: &LivePage) -> Self {
        self.live = Some(page.clone());
        self
    }

    /// The router, to merge into an app or serve alone.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let readiness = self.readiness.clone();
        let mut router = Router::new()
            .route(&self.live_path, get(health::live))
            .route(
                &self.ready_path,
                get(move || {
                    let readiness = readiness.clone();
                    async move { health::ready(&readiness) }
                }),
            );
        if let Some(page) = &self.live {
            router = router.merge(page.router());
        }
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = &self.metrics {
            return router.route(&self.metrics_path, metrics.route());
        }
        router
    }
}

/// A route path: starts with `/`.
pub(crate) fn checked_path(setting: &str, path: &str) -> Result<String, ConfigError> {
    if path.starts_with('/') {
        Ok(path.to_owned())
    } else {
        Err(ConfigError::invalid(
            setting,
            format!("must start with `/` or be `off`, got `{path}`"),
        ))
    }
}
