//! One stack's request series: counts and durations by route template, and requests in flight.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{Histogram, Metrics, IN_FLIGHT, REQUESTS_TOTAL, REQUEST_DURATION};

/// Metric handles of one stack, looked up once per label set instead of per request (a
/// registry lookup with label allocation costs microseconds; a cached handle nanoseconds).
pub(crate) struct RequestMetrics {
    metrics: Metrics,
    stack: Arc<str>,
    in_flight: metrics::Gauge,
    /// Keyed by route template (a bounded set: unmatched paths share one label), so a fast
    /// unkeyed hash is safe here.
    by_route: RwLock<HashMap<String, Vec<RouteHandles>, foldhash::fast::FixedState>>,
}

struct RouteHandles {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: Arc<Histogram>,
}

impl RequestMetrics {
    pub(crate) fn new(metrics: &Metrics, stack: Arc<str>) -> Self {
        Self {
            in_flight: metrics.gauge(IN_FLIGHT, &vec![("stack", stack.to_string())]),
            metrics: metrics.clone(),
            stack,
            by_route: RwLock::default(),
        }
    }

    /// Counts the request in flight until the returned guard drops, however the request ends.
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.in_flight.increment(1.0);
        InFlight(&self.in_flight)
    }

    /// Counts one request; `elapsed` is in instrumentation clock ticks.
    pub(crate) fn record(
        &self,
        method: &http::Method,
        route: &str,
        status: http::StatusCode,
        elapsed: u64,
    ) {
        let method = method_label(method);
        let status = status.as_u16();
        let find = |handles: &[RouteHandles]| {
            handles
                .iter()
                .find(|h| h.method == method && h.status == status)
                .map(|h| {
                    h.requests.increment(1);
                    h.duration.record_ticks(elapsed);
                })
        };
        if let Ok(map) = self.by_route.read() {
            if map.get(route).and_then(|h| find(h)).is_some() {
                return;
            }
        }
        let stack = self.stack.to_string();
        let handles = RouteHandles {
            method,
            status,
            requests: self.metrics.counter(
                REQUESTS_TOTAL,
                &vec![
                    ("stack", stack.clone()),
                    ("method", method.to_owned()),
                    ("route", route.to_owned()),
                    ("status", status.to_string()),
                ],
            ),
            duration: self.metrics.histogram(
                REQUEST_DURATION,
                vec![
                    ("stack", stack),
                    ("method", method.to_owned()),
                    ("route", route.to_owned()),
                ],
            ),
        };
        handles.requests.increment(1);
        handles.duration.record_ticks(elapsed);
        if let Ok(mut map) = self.by_route.write() {
            // Another thread may have added the same handles meanwhile; both point at the same
            // series, so the count above stands either way.
            let list = map.entry(route.to_owned()).or_default();
            if !list
                .iter()
                .any(|h| h.method == method && h.status == status)
            {
                list.push(handles);
            }
        }
    }
}

/// Keeps a request counted in `http_requests_in_flight`.
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
