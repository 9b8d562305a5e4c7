//! Prometheus metrics of requests and middlewares, in a registry the application owns.
//!
//! A [`Metrics`] is a registry: hand it to every stack that should record
//! ([`Stack::metrics`](crate::Stack::metrics)) and serve its text exposition where you choose,
//! usually as a route of your app ([`Metrics::route`]), so the stack's middlewares (auth, IP
//! allow lists) protect it like any other route. callnext never installs a process-global
//! `metrics` recorder: an application that installed its own keeps it, and still gets
//! callnext's series from [`Metrics::render`].
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `stack`, `method`, `route`, `status` |
//! | `http_request_duration_seconds` | histogram | `stack`, `method`, `route` |
//! | `http_requests_in_flight` | gauge | `stack` |
//! | `callnext_middleware_poll_seconds` | histogram (exclusive poll time per request) | `stack`, `middleware` |
//! | `callnext_blocking_events_total` | counter | `stack`, `middleware` |
//! | `callnext_concurrency_in_flight` | gauge (requests inside a concurrency limit) | `stack`, `middleware` |
//! | `callnext_rate_limit_requests_total` | counter | `stack`, `middleware`, `policy`, `decision` |
//! | `callnext_rate_limit_store_errors_total` | counter | `stack`, `middleware`, `action` |
//! | `callnext_rate_limit_store_seconds` | histogram | `stack`, `middleware`, `store` |
//! | `callnext_session_store_errors_total` | counter | `stack`, `middleware`, `op` |
//! | `callnext_session_store_seconds` | histogram | `stack`, `middleware` |
//!
//! `route` is the matched route template (`/items/{item_id}`); requests that matched no route
//! share the label `unmatched`, so random paths cannot blow up the number of series. `stack` is
//! the stack's name ([`Stack::name`](crate::Stack::name), `main` by default), so two stacks
//! recording into one registry keep their series apart; `middleware` is each entry's name, plus
//! `app` (the router and handlers) and `body` (the response body's polls).
//!
//! ```
//! use axum::{routing::get, Router};
//! use callnext::{metrics::Metrics, Stack, TestClient};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let metrics = Metrics::new();
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/metrics", metrics.route());
//! let client = TestClient::new(Stack::new().metrics(&metrics).service(app));
//!
//! client.get("/").await;
//! let text = client.get("/metrics").await.text();
//! assert!(text.contains(r#"http_requests_total{stack="main",method="GET",route="/",status="200"} 1"#));
//! # });
//! ```

mod histogram;
mod request;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use axum::routing::MethodRouter;
use http::{header, HeaderValue};
use metrics::{Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::error::{ConfigError, ConfigErrorKind};
use histogram::Family;
pub(crate) use histogram::{Histogram, Labels, POLL_BUCKETS_NS, REQUEST_BUCKETS_NS};
pub(crate) use request::RequestMetrics;

pub(crate) const REQUESTS_TOTAL: &str = "http_requests_total";
pub(crate) const REQUEST_DURATION: &str = "http_request_duration_seconds";
pub(crate) const IN_FLIGHT: &str = "http_requests_in_flight";
pub(crate) const POLL_SECONDS: &str = "callnext_middleware_poll_seconds";
pub(crate) const BLOCKING_TOTAL: &str = "callnext_blocking_events_total";
pub(crate) const CONCURRENCY_IN_FLIGHT: &str = "callnext_concurrency_in_flight";
pub(crate) const RATE_LIMIT_REQUESTS: &str = "callnext_rate_limit_requests_total";
pub(crate) const RATE_LIMIT_STORE_ERRORS: &str = "callnext_rate_limit_store_errors_total";
pub(crate) const RATE_LIMIT_STORE_SECONDS: &str = "callnext_rate_limit_store_seconds";
pub(crate) const SESSION_STORE_ERRORS: &str = "callnext_session_store_errors_total";
pub(crate) const SESSION_STORE_SECONDS: &str = "callnext_session_store_seconds";

/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = crate::instrument::UNMATCHED;

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metrics registry: what stacks record into and what `/metrics` renders.
///
/// Cheap to clone (a handle). See the [module docs](self) for the series and an example.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Registry>,
}

struct Registry {
    /// Counters and gauges; never installed as the global recorder.
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    histograms: Mutex<[Family; 4]>,
    /// The stacks recording here, by name: the stack's identity, held by the stack and every
    /// service built from it; once they are all gone, the name is free again.
    stacks: Mutex<Vec<(String, Weak<dyn Send + Sync>)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        for (name, help) in [
            (REQUESTS_TOTAL, "HTTP requests answered."),
            (
                BLOCKING_TOTAL,
                "Single polls of a middleware that exceeded the blocking threshold.",
            ),
            (
                RATE_LIMIT_REQUESTS,
                "Requests a rate limiter decided, per policy: allowed, limited, or limited in shadow mode.",
            ),
            (
                RATE_LIMIT_STORE_ERRORS,
                "Rate-limit decisions the store could not make, by the action taken instead.",
            ),
            (
                SESSION_STORE_ERRORS,
                "Session store calls that failed (each a 503 for its request), by operation.",
            ),
        ] {
            recorder.describe_counter(KeyName::from(name), None, SharedString::from(help));
        }
        recorder.describe_gauge(
            KeyName::from(IN_FLIGHT),
            None,
            SharedString::from("HTTP requests being handled."),
        );
        Self {
            inner: Arc::new(Registry {
                recorder,
                handle,
                histograms: Mutex::new([
                    Family::new(
                        REQUEST_DURATION,
                        "Time from receiving a request to having its response head.",
                        REQUEST_BUCKETS_NS,
                    ),
                    Family::new(
                        POLL_SECONDS,
                        "Per request, time spent inside a middleware's own polls (inner layers excluded).",
                        POLL_BUCKETS_NS,
                    ),
                    Family::new(
                        RATE_LIMIT_STORE_SECONDS,
                        "Time a rate limiter waited for its store (Redis), per call.",
                        POLL_BUCKETS_NS,
                    ),
                    Family::new(
                        SESSION_STORE_SECONDS,
                        "Time the session battery waited for its store, per call.",
                        POLL_BUCKETS_NS,
                    ),
                ]),
                stacks: Mutex::default(),
            }),
        }
    }

    /// The Prometheus text exposition of every series recorded so far.
    pub fn render(&self) -> String {
        let mut out = self.inner.handle.render();
        let families = self
            .inner
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for family in families.iter() {
            family.render(&mut out);
        }
        out
    }

    /// A route that answers `GET` and `HEAD` with [`Metrics::render`], for
    /// `Router::route("/metrics", metrics.route())`; other methods get a JSON 405.
    pub fn route<S: Clone + Send + Sync + 'static>(&self) -> MethodRouter<S> {
        let metrics = self.clone();
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
                    metrics.render(),
                )
            }
        })
    }

    /// Claims `name` for the stack whose identity is `owner`; a different stack under the same
    /// name would mix its series with the first one's. A stack whose entries or name changed
    /// after a clone is a different stack.
    pub(crate) fn claim_stack(
        &self,
        name: &str,
        owner: &Arc<dyn Send + Sync>,
    ) -> Result<(), ConfigError> {
        let mut stacks = self
            .inner
            .stacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match stacks.iter_mut().find(|(n, _)| n == name) {
            Some((_, other)) => match other.upgrade() {
                Some(other) if Arc::ptr_eq(&other, owner) => Ok(()),
                Some(_) => Err(ConfigError::new(
                    ConfigErrorKind::MetricsConflict,
                    format!(
                        "another stack named `{name}` already records into this metrics registry; give each stack its own name with `Stack::name`"
                    ),
                )),
                None => {
                    *other = Arc::downgrade(owner);
                    Ok(())
                }
            },
            None => {
                stacks.push((name.to_owned(), Arc::downgrade(owner)));
                Ok(())
            }
        }
    }

    /// Lets a new stack take `name` over from the one that has it (a configuration reload:
    /// the old stack finishes its requests into the same series).
    #[cfg(all(feature = "config", feature = "server"))]
    pub(crate) fn hand_over_stack(&self, name: &str) {
        self.inner
            .stacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(n, _)| n != name);
    }

    pub(crate) fn counter(&self, name: &'static str, labels: &Labels) -> metrics::Counter {
        self.inner
            .recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    pub(crate) fn gauge(&self, name: &'static str, labels: &Labels) -> metrics::Gauge {
        self.inner
            .recorder
            .register_gauge(&key(name, labels), &METADATA)
    }

    /// The histogram `name` with `labels`, shared by every stack service that records it, so
    /// the exposition never repeats a series.
    pub(crate) fn histogram(&self, name: &'static str, labels: Labels) -> Arc<Histogram> {
        let mut families = self
            .inner
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match families.iter_mut().find(|f| f.name == name) {
            Some(family) => family.series(labels),
            None => Arc::new(Histogram::new(REQUEST_BUCKETS_NS)),
        }
    }
}

static METADATA: Metadata<'static> =
    Metadata::new("callnext", metrics::Level::INFO, Some(module_path!()));

fn key(name: &'static str, labels: &Labels) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}
