//! Prometheus metrics: per request (count, duration, in flight) and per middleware (exclusive
//! poll time, blocking events).
//!
//! [`Stack::metrics_endpoint`](crate::Stack::metrics_endpoint) turns recording on and serves the
//! text exposition at a path; [`render`] gives the same text for mounting elsewhere. Counters and
//! gauges go through the `metrics` crate's global recorder (a Prometheus one, installed on first
//! use); histograms are callnext's own fixed-bucket atomic histograms (see [`render`]).
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
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub(crate) const REQUESTS_TOTAL: &str = "http_requests_total";
pub(crate) const REQUEST_DURATION: &str = "http_request_duration_seconds";
pub(crate) const IN_FLIGHT: &str = "http_requests_in_flight";
pub(crate) const POLL_SECONDS: &str = "callnext_middleware_poll_seconds";
pub(crate) const BLOCKING_TOTAL: &str = "callnext_blocking_events_total";

/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Bucket bounds in nanoseconds: 0.5 ms to 10 s.
const REQUEST_BUCKETS_NS: &[u64] = &[
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Bucket bounds in nanoseconds: 10 µs to 0.5 s.
const POLL_BUCKETS_NS: &[u64] = &[
    10_000,
    50_000,
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
];

/// The global Prometheus handle, installing the recorder on first call. `None` when another
/// global `metrics` recorder was installed first (its owner renders the counters then).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                metrics::describe_counter!(REQUESTS_TOTAL, "HTTP requests answered.");
                metrics::describe_gauge!(IN_FLIGHT, "HTTP requests being handled.");
                metrics::describe_counter!(
                    BLOCKING_TOTAL,
                    "Single polls of a middleware that exceeded the blocking threshold."
                );
                Some(handle)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot install the Prometheus recorder; counters go to the recorder already installed");
                None
            }
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric recorded so far.
///
/// Histograms have fixed buckets and record with two relaxed atomic adds, with nothing buffered
/// and no upkeep pass: the exporter's own histograms buffer every sample until upkeep folds them
/// in, which was the largest cost of the metrics at 100k requests/s and stalled the core the
/// upkeep ran on.
pub fn render() -> String {
    let mut out = prometheus()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    render_histograms(&mut out);
    out
}

/// A histogram with fixed bucket bounds (nanoseconds), exposed in seconds.
pub(crate) struct Histogram {
    bounds_ns: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new(bounds_ns: &'static [u64]) -> Self {
        Self {
            bounds_ns,
            counts: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_ns.partition_point(|&bound| bound < ns);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }
}

type Labels = Vec<(&'static str, String)>;

struct Family {
    name: &'static str,
    help: &'static str,
    bounds_ns: &'static [u64],
    series: Vec<(Labels, Arc<Histogram>)>,
}

fn families() -> &'static Mutex<[Family; 2]> {
    static FAMILIES: OnceLock<Mutex<[Family; 2]>> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        Mutex::new([
            Family {
                name: REQUEST_DURATION,
                help: "Time from receiving a request to having its response head.",
                bounds_ns: REQUEST_BUCKETS_NS,
                series: Vec::new(),
            },
            Family {
                name: POLL_SECONDS,
                help: "Per request, time spent inside a middleware's own polls (inner layers excluded).",
                bounds_ns: POLL_BUCKETS_NS,
                series: Vec::new(),
            },
        ])
    })
}

/// The histogram `name` with `labels`, shared by every stack service that records it, so the
/// exposition never repeats a series.
pub(crate) fn histogram(name: &'static str, labels: Labels) -> Arc<Histogram> {
    let mut families = families().lock().unwrap_or_else(PoisonError::into_inner);
    let Some(family) = families.iter_mut().find(|f| f.name == name) else {
        return Arc::new(Histogram::new(REQUEST_BUCKETS_NS));
    };
    if let Some((_, h)) = family.series.iter().find(|(l, _)| *l == labels) {
        return Arc::clone(h);
    }
    let h = Arc::new(Histogram::new(family.bounds_ns));
    family.series.push((labels, Arc::clone(&h)));
    h
}

fn render_histograms(out: &mut String) {
    let families = families().lock().unwrap_or_else(PoisonError::into_inner);
    for family in families.iter().filter(|f| !f.series.is_empty()) {
        let name = family.name;
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (labels, h) in &family.series {
            let mut pairs = String::new();
            for (key, value) in labels {
                let value = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(pairs, "{key}=\"{value}\",");
            }
            let mut cumulative = 0;
            for (i, count) in h.counts.iter().enumerate() {
                cumulative += count.load(Relaxed);
                let le = h
                    .bounds_ns
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| seconds(*b));
                let _ = writeln!(out, "{name}_bucket{{{pairs}le=\"{le}\"}} {cumulative}");
            }
            let pairs = pairs.trim_end_matches(',');
            let sum = seconds(h.sum_ns.load(Relaxed));
            let _ = writeln!(out, "{name}_sum{{{pairs}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{pairs}}} {cumulative}");
        }
        out.push('\n');
    }
}

fn seconds(ns: u64) -> String {
    (ns as f64 / 1e9).to_string()
}

/// Metric handles of one stack service, looked up once per label set instead of per request
/// (a registry lookup with label allocation costs microseconds; a cached handle nanoseconds).
pub(crate) struct RequestMetrics {
    in_flight: metrics::Gauge,
    /// route template -> handles per (method, status)
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
        let find = |handles: &[RouteHandles]| {
            handles
                .iter()
                .find(|h| h.method == method && h.status == status)
                .map(|h| {
                    h.requests.increment(1);
                    h.duration.record(elapsed);
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
            duration: histogram(
                REQUEST_DURATION,
                vec![("method", method.to_owned()), ("route", route.to_owned())],
            ),
        };
        handles.requests.increment(1);
        handles.duration.record(elapsed);
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
