//! Prometheus metrics: per request (count, duration, in flight) and per middleware (exclusive
//! poll time, blocking events).
//!
//! [`Stack::metrics_endpoint`](crate::Stack::metrics_endpoint) turns recording on and serves the
//! text exposition at a path; [`render`] gives the same text for mounting elsewhere. The
//! recorder is the `metrics` crate's global one, installed on first use.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `method`, `route`, `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route` |
//! | `http_requests_in_flight` | gauge | — |
//! | `callnext_middleware_poll_seconds` | histogram (exclusive poll time per request) | `middleware` |
//! | `callnext_blocking_events_total` | counter | `middleware` |
//!
//! `route` is the matched route template (`/items/{item_id}`); requests that matched no route
//! share the label `unmatched`, so random paths cannot blow up the number of series.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub(crate) const REQUESTS_TOTAL: &str = "http_requests_total";
pub(crate) const REQUEST_DURATION: &str = "http_request_duration_seconds";
pub(crate) const IN_FLIGHT: &str = "http_requests_in_flight";
pub(crate) const POLL_SECONDS: &str = "callnext_middleware_poll_seconds";
pub(crate) const BLOCKING_TOTAL: &str = "callnext_blocking_events_total";

/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const POLL_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
];

/// The global Prometheus handle, installing the recorder on first call. `None` when another
/// global `metrics` recorder was installed first (its owner renders the metrics then).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), REQUEST_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(POLL_SECONDS.into()), POLL_BUCKETS)
                });
            let handle = match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(handle)) => handle,
                Ok(Err(err)) | Err(err) => {
                    tracing::warn!(error = %err, "cannot install the Prometheus recorder; metrics go to the recorder already installed");
                    return None;
                }
            };
            let upkeep = handle.clone();
            // Histograms buffer samples until upkeep folds them in; without it memory grows.
            let spawned = std::thread::Builder::new()
                .name("callnext-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "cannot start the metrics upkeep thread");
            }
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(REQUESTS_TOTAL, "HTTP requests answered.");
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from receiving a request to having its response head."
    );
    metrics::describe_gauge!(IN_FLIGHT, "HTTP requests being handled.");
    metrics::describe_histogram!(
        POLL_SECONDS,
        metrics::Unit::Seconds,
        "Per request, the time spent inside a middleware's own polls (inner layers excluded)."
    );
    metrics::describe_counter!(
        BLOCKING_TOTAL,
        "Single polls of a middleware that exceeded the blocking threshold."
    );
}

/// The Prometheus text exposition of every metric recorded so far (empty when another recorder
/// was installed first).
pub fn render() -> String {
    prometheus()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Metric handles of one stack service, looked up once per label set instead of per request
/// (a registry lookup with label allocation costs microseconds; a cached handle nanoseconds).
pub(crate) struct RequestMetrics {
    in_flight: metrics::Gauge,
    /// route template -> (method, status, counter, duration histogram)
    by_route: RwLock<HashMap<String, Vec<RouteHandles>>>,
}

struct RouteHandles {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl RequestMetrics {
    pub(crate) fn new() -> Self {
        prometheus();
        Self {
            in_flight: metrics::gauge!(IN_FLIGHT),
            by_route: RwLock::default(),
        }
    }

    /// Counts the request in flight until the returned guard drops, however the request ends.
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.in_flight.increment(1.0);
        InFlight(&self.in_flight)
    }

    pub(crate) fn record(
        &self,
        method: &http::Method,
        route: &str,
        status: http::StatusCode,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        let status = status.as_u16();
        let seconds = elapsed.as_secs_f64();
        let find = |handles: &[RouteHandles]| {
            handles
                .iter()
                .find(|h| h.method == method && h.status == status)
                .map(|h| {
                    h.requests.increment(1);
                    h.duration.record(seconds);
                })
        };
        if let Ok(map) = self.by_route.read() {
            if map.get(route).and_then(|h| find(h)).is_some() {
                return;
            }
        }
        let handles = RouteHandles {
            method,
            status,
            requests: metrics::counter!(
                REQUESTS_TOTAL,
                "method" => method,
                "route" => route.to_owned(),
                "status" => status.to_string(),
            ),
            duration: metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route.to_owned()),
        };
        handles.requests.increment(1);
        handles.duration.record(seconds);
        if let Ok(mut map) = self.by_route.write() {
            let list = map.entry(route.to_owned()).or_default();
            if find(list).is_none() {
                list.push(handles);
            }
        }
    }
}

/// Keeps a request counted in flight.
pub(crate) struct InFlight<'a>(&'a metrics::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
/// Standard methods as static labels; anything else shares one label.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}
