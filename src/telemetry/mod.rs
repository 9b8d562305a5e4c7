//! OpenTelemetry traces over OTLP/HTTP: one server span per request, the stack's middlewares as
//! child spans (or events) with their own time, blocking polls as events, W3C trace context
//! continued from the caller. Feature `otel`; `[telemetry]` in the configuration file.
//!
//! - The server span is named `METHOD route` (`GET /items/{id}`) and carries
//!   `http.request.method`, `http.route`, `http.response.status_code`, `url.path`,
//!   `client.address` (the [`ClientIp`]) and `server.address`; a 5xx sets its status to error.
//! - Each middleware that ran is a child span from its first poll to its last, with
//!   `callnext.exclusive_ms` (its own time) and `callnext.wall_ms` (wall time, inner layers
//!   excluded), from the stack's instrumentation (on by default). A poll at or over the
//!   blocking threshold is a `blocking` event on its middleware's span.
//! - A `traceparent` header continues the caller's trace (its sampled flag decides, its
//!   `tracestate` is kept); without one a trace is sampled with `sampling_ratio`. Traces with
//!   a 5xx or a blocking poll are kept whatever the sampling said (unless turned off).
//! - Every request carries its [`TraceContext`] (the access log writes its `trace_id` beside
//!   the request id). A kept request's spans are encoded once, when it is answered, and sent in
//!   batches from a thread of their own: requests never wait on the collector; a full queue
//!   drops spans (counted); [`Telemetry::flush`] at shutdown sends what is queued.
//!
//! The OTLP encoding is callnext's own (module `otlp`): the OpenTelemetry SDK and its OTLP
//! exporter, measured first, cost 2.2 times the CPU of a server without traces at 100 %
//! sampling (bench/sinks.sh); the tests decode what is sent with the OTLP project's own
//! protobuf and JSON schemas.
//!
//! ```
//! use std::time::Duration;
//! use callnext::telemetry::Telemetry;
//! use callnext::Stack;
//!
//! let telemetry = Telemetry::builder()
//!     .endpoint("http://127.0.0.1:4318")
//!     .service_name("orders")
//!     .sampling_ratio(0.1)
//!     .build()
//!     .unwrap();
//! let stack = Stack::new().telemetry(telemetry.clone());
//! # let _ = stack;
//! telemetry.shutdown(Duration::from_secs(1));
//! ```

mod otlp;

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use self::otlp::{
    encode_child, encode_event, encode_middleware_event, encode_span, Attr, ChildOut, Encoding,
    EventOut, Exporter, SpanOut, Target,
};
use crate::instrument::clock::ticks_to_ns;
use crate::{ClientIp, ConfigError, Request};

/// How the spans are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `http/protobuf` (the default of collectors).
    #[default]
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

/// How the middlewares' timings appear in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MiddlewareSpans {
    /// A child span per middleware that ran (the default: the waterfall in Jaeger or Tempo).
    #[default]
    Spans,
    /// An event per middleware on the server span (cheaper to store).
    Events,
    /// Neither.
    Off,
}

/// The trace a request belongs to: in its extensions when the stack has [`Telemetry`], for
/// middlewares and handlers to read (the access log writes its trace id). Not put on the
/// response: that would allocate an extension map for every response; a middleware that
/// wants it there (a header for the client, say) copies it from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id's 32 and the span id's 16 lowercase hex digits (kept inline: copying a
    /// context allocates nothing).
    hex: [u8; 48],
    sampled: bool,
}

impl TraceContext {
    fn new(trace_id: u128, span_id: u64, sampled: bool) -> Self {
        /// Each byte's two hex digits.
        const PAIRS: [[u8; 2]; 256] = {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut pairs = [[0; 2]; 256];
            let mut i = 0;
            while i < 256 {
                pairs[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
                i += 1;
            }
            pairs
        };
        let mut hex = [0u8; 48];
        for (i, byte) in trace_id.to_be_bytes().into_iter().enumerate() {
            hex[2 * i..2 * i + 2].copy_from_slice(&PAIRS[usize::from(byte)]);
        }
        for (i, byte) in span_id.to_be_bytes().into_iter().enumerate() {
            hex[32 + 2 * i..34 + 2 * i].copy_from_slice(&PAIRS[usize::from(byte)]);
        }
        Self { hex, sampled }
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.hex[..32]).unwrap_or_default()
    }

    /// The request's server span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.hex[32..]).unwrap_or_default()
    }

    /// Whether the trace was sampled when the request came in (a 5xx or a blocking poll can
    /// still keep it).
    pub fn sampled(&self) -> bool {
        self.sampled
    }
}

/// The settings of [`Telemetry`], checked by [`TelemetryBuilder::build`].
#[derive(Clone)]
#[must_use]
pub struct TelemetryBuilder {
    endpoint: String,
    protocol: Protocol,
    headers: Vec<(String, String)>,
    service_name: String,
    sampling_ratio: f64,
    keep_errors: bool,
    keep_blocking: bool,
    middlewares: MiddlewareSpans,
    timeout: Duration,
}

impl std::fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials (an API key, `authorization`): names only.
        f.debug_struct("TelemetryBuilder")
            .field("endpoint", &crate::redact::redact_urls(&self.endpoint))
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("sampling_ratio", &self.sampling_ratio)
            .finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// The collector, `http://host:4318` (spans are POSTed to `/v1/traces` under it) or a full
    /// URL with its path. Required.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// How spans are encoded. Defaults to [`Protocol::HttpProtobuf`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// A header sent with every export (`authorization`, ...).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `service.name` resource. Defaults to `callnext`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// The share of new traces sampled, 0 to 1 (a caller's `traceparent` decides for its
    /// own). Defaults to 1.
    pub fn sampling_ratio(mut self, ratio: f64) -> Self {
        self.sampling_ratio = ratio;
        self
    }

    /// Whether traces with a 5xx answer or a blocking poll are kept whatever the sampling
    /// said. Both default to yes.
    pub fn always_keep(mut self, errors: bool, blocking: bool) -> Self {
        self.keep_errors = errors;
        self.keep_blocking = blocking;
        self
    }

    /// How the middlewares' timings appear. Defaults to [`MiddlewareSpans::Spans`].
    pub fn middlewares(mut self, how: MiddlewareSpans) -> Self {
        self.middlewares = how;
        self
    }

    /// The deadline of one export. Defaults to 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and starts the exporter's thread.
    ///
    /// # Errors
    ///
    /// No endpoint or one that is not an `http://` or `https://` URL, a ratio outside 0 to 1,
    /// an invalid header, or an exporter that cannot start.
    pub fn build(self) -> Result<Telemetry, ConfigError> {
        let uri = crate::http_client::http_url("endpoint", &self.endpoint)?;
        // A bare collector address gets the traces path, as OTEL_EXPORTER_OTLP_ENDPOINT does.
        let uri = if uri.path() == "/" {
            crate::http_client::http_url("endpoint", &format!("{uri}v1/traces"))?
        } else {
            uri
        };
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(ConfigError::invalid(
                "sampling_ratio",
                format!("expected 0 to 1, got {}", self.sampling_ratio),
            ));
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            match (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => headers.push((name, value)),
                _ => {
                    return Err(ConfigError::invalid(
                        "headers",
                        format!("`{}` is not a valid header", crate::Printable::new(name)),
                    ))
                }
            }
        }
        let encoding = match self.protocol {
            Protocol::HttpProtobuf => Encoding::Protobuf,
            Protocol::HttpJson => Encoding::Json,
        };
        let exporter = Exporter::start(
            Target {
                uri,
                headers,
                service: self.service_name,
                timeout: self.timeout,
            },
            encoding,
        )?;
        Ok(Telemetry {
            inner: Arc::new(Inner {
                exporter,
                ratio_bound: ratio_bound(self.sampling_ratio),
                keep_errors: self.keep_errors,
                keep_blocking: self.keep_blocking,
                middlewares: self.middlewares,
            }),
        })
    }
}

/// Traces whose id, read as a number, is below this are sampled (the specification's
/// `TraceIdRatioBased`, on the lower 8 bytes).
fn ratio_bound(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio * (1u64 << 63) as f64) as u64
    }
}

/// Exports spans; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    exporter: Arc<Exporter>,
    ratio_bound: u64,
    keep_errors: bool,
    keep_blocking: bool,
    middlewares: MiddlewareSpans,
}

impl Drop for Inner {
    /// The last clone gone: the exporter's thread sends what is queued and ends.
    fn drop(&mut self) {
        self.exporter.close();
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("middlewares", &self.inner.middlewares)
            .finish_non_exhaustive()
    }
}

/// One request's trace until it is answered.
pub(crate) struct RequestTrace {
    trace_id: u128,
    span_id: u64,
    parent_id: u64,
    trace_state: String,
    sampled: bool,
    method: http::Method,
    /// The request's URI and `Host` header, shared with the request (no copy of their text).
    uri: http::Uri,
    host: Option<http::HeaderValue>,
    client: Option<IpAddr>,
    /// The clock's ticks and the wall time (ns since the epoch) when it started.
    ticks: u64,
    start_ns: u64,
}

/// A random non-zero id. Trace and span ids need to be unique, not secret: a thread's own
/// wyrand generator (`fastrand`, seeded from the operating system's randomness) costs a few
/// instructions where a CSPRNG took a hundred, as the OpenTelemetry SDK's small generator does.
fn random_u128() -> u128 {
    fastrand::u128(..).max(1)
}

fn random_u64() -> u64 {
    fastrand::u64(..).max(1)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// A W3C `traceparent`: the trace id, the parent span id and whether it is sampled.
fn traceparent(value: &str) -> Option<(u128, u64, bool)> {
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let version = &b[..2];
    if !hex(version) || version == b"ff" || (version == b"00" && b.len() != 55) {
        return None;
    }
    if b.len() > 55 && b[55] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&b[3..35], &b[36..52], &b[53..55]);
    if !hex(trace) || !hex(parent) || !hex(flags) {
        return None;
    }
    let trace = u128::from_str_radix(&value[3..35], 16).ok()?;
    let parent = u64::from_str_radix(&value[36..52], 16).ok()?;
    let flags = u8::from_str_radix(&value[53..55], 16).ok()?;
    (trace != 0 && parent != 0).then_some((trace, parent, flags & 1 == 1))
}

/// A `Host` without its port (`[::1]:8080` → `[::1]`).
fn without_port(host: &str) -> &str {
    let digits = host.bytes().rev().take_while(u8::is_ascii_digit).count();
    match host.len().checked_sub(digits + 1) {
        Some(colon) if digits > 0 && host.as_bytes()[colon] == b':' => &host[..colon],
        _ => host,
    }
}

thread_local! {
    /// Where a kept request's spans are encoded before they are queued in one copy: no
    /// allocation per request once a thread's buffers have grown.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    spans: Vec<u8>,
    events: Vec<u8>,
    entries: Vec<EntryTiming>,
}

/// A scratch buffer larger than this (a request with a very long path) is not kept.
const SCRATCH_KEPT: usize = 64 * 1024;

impl Telemetry {
    /// The settings; an endpoint is required.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder {
            endpoint: String::new(),
            protocol: Protocol::HttpProtobuf,
            headers: Vec::new(),
            service_name: "callnext".to_owned(),
            sampling_ratio: 1.0,
            keep_errors: true,
            keep_blocking: true,
            middlewares: MiddlewareSpans::Spans,
            timeout: Duration::from_secs(10),
        }
    }

    /// Sends the spans queued so far, waiting (blocking the thread) at most `timeout`;
    /// `false` if that took longer.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.exporter.flush(timeout)
    }

    /// Sends what is queued (waiting at most `timeout`) and stops the exporter.
    pub fn shutdown(&self, timeout: Duration) {
        self.inner.exporter.stop(timeout);
    }

    /// Spans dropped (a full queue, or an export that failed) and spans sent, since the start.
    pub fn counts(&self) -> (u64, u64) {
        self.inner.exporter.counts()
    }

    /// Starts the request's trace, continuing the caller's, and puts its [`TraceContext`] on
    /// the request. (Boxed: the request's future, which holds it, must stay small.)
    pub(crate) fn start(&self, req: &mut Request) -> Box<RequestTrace> {
        let headers = req.headers();
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent);
        let trace_state = match parent {
            Some(_) => headers
                .get(TRACESTATE)
                .and_then(|v| v.to_str().ok())
                .filter(|s| s.len() <= 512)
                .unwrap_or("")
                .to_owned(),
            None => String::new(),
        };
        let (trace_id, parent_id, sampled) = match parent {
            Some((trace, parent, sampled)) => (trace, parent, sampled),
            None => {
                let trace = random_u128();
                let low = (trace as u64) >> 1;
                (
                    trace,
                    0,
                    self.inner.ratio_bound == u64::MAX || low < self.inner.ratio_bound,
                )
            }
        };
        let span_id = random_u64();
        let host = headers.get(http::header::HOST).cloned();
        let context = TraceContext::new(trace_id, span_id, sampled);
        let trace = Box::new(RequestTrace {
            trace_id,
            span_id,
            parent_id,
            trace_state,
            sampled,
            method: req.method().clone(),
            uri: req.uri().clone(),
            host,
            client: ClientIp::of(req).map(|ip| ip.0),
            ticks: crate::instrument::clock::now(),
            start_ns: now_ns(),
        });
        req.extensions_mut().insert(context);
        trace
    }

    /// Ends the request's trace: if it is kept, its spans are encoded and queued. `end`: the
    /// clock's ticks when the response was ready, if read already (else 0).
    pub(crate) fn finish(
        &self,
        trace: Box<RequestTrace>,
        route: &str,
        status: http::StatusCode,
        timings: Option<Timings<'_>>,
        end: u64,
    ) {
        let inner = &self.inner;
        let keep = trace.sampled
            || (inner.keep_errors && status.is_server_error())
            || (inner.keep_blocking && timings.as_ref().is_some_and(Timings::blocked));
        if !keep {
            return;
        }
        let end = if end == 0 {
            crate::instrument::clock::now()
        } else {
            end
        };
        let encoded = SCRATCH.try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                self.encode(&trace, route, status, timings.as_ref(), end, &mut scratch);
                if scratch.spans.capacity() > SCRATCH_KEPT {
                    *scratch = Scratch::default();
                }
                true
            }
            Err(_) => false,
        });
        // Not reentered in practice, nor run while the thread's locals are torn down; a fresh
        // scratch if it ever is.
        if encoded != Ok(true) {
            let mut scratch = Scratch::default();
            self.encode(&trace, route, status, timings.as_ref(), end, &mut scratch);
        }
    }

    /// Encodes a kept request's spans (or its one span and its events) and queues them.
    fn encode(
        &self,
        trace: &RequestTrace,
        route: &str,
        status: http::StatusCode,
        timings: Option<&Timings<'_>>,
        end: u64,
        scratch: &mut Scratch,
    ) {
        let inner = &self.inner;
        let Scratch {
            spans: out,
            events,
            entries,
        } = scratch;
        out.clear();
        events.clear();
        entries.clear();
        if let Some(timings) = timings {
            timings.entries(entries);
        }
        let names = timings.map_or(&[][..], |t| t.names);
        let name_of = |e: &EntryTiming| names.get(e.index).map_or("", |n| &**n);
        let at = |ticks: u64| {
            trace
                .start_ns
                .saturating_add(ticks_to_ns(ticks.saturating_sub(trace.ticks)))
        };
        let ms = |ns: u64| ns as f64 / 1e6;
        let encoding = inner.exporter.encoding;
        let blocking = |events: &mut Vec<u8>, e: &EntryTiming| {
            encode_event(
                events,
                &EventOut {
                    name: "blocking",
                    time_ns: at(e.last),
                    attributes: &[
                        Attr::Middleware(name_of(e)),
                        Attr::PollMs(ms(ticks_to_ns(e.worst))),
                        Attr::Route(route),
                    ],
                },
                encoding,
            );
        };
        let mut spans = 1;
        for e in entries.iter() {
            match inner.middlewares {
                MiddlewareSpans::Spans => {
                    events.clear();
                    if e.blocking {
                        blocking(events, e);
                    }
                    encode_child(
                        out,
                        &ChildOut {
                            trace_id: trace.trace_id,
                            span_id: random_u64(),
                            parent_id: trace.span_id,
                            trace_state: &trace.trace_state,
                            name: name_of(e),
                            start_ns: at(e.first),
                            end_ns: at(e.last),
                            exclusive_ms: ms(e.exclusive_ns),
                            wall_ms: ms(e.wall_ns),
                            events,
                        },
                        encoding,
                    );
                    spans += 1;
                }
                MiddlewareSpans::Events => {
                    encode_middleware_event(
                        events,
                        at(e.first),
                        name_of(e),
                        ms(e.exclusive_ns),
                        ms(e.wall_ns),
                        encoding,
                    );
                    if e.blocking {
                        blocking(events, e);
                    }
                }
                MiddlewareSpans::Off => {
                    if e.blocking {
                        blocking(events, e);
                    }
                }
            }
        }
        if inner.middlewares == MiddlewareSpans::Spans {
            events.clear();
        }
        let method = trace.method.as_str();
        let client = trace.client.map(crate::client_ip::AddressText::new);
        let host = trace
            .host
            .as_ref()
            .and_then(|host| host.to_str().ok())
            .map(without_port)
            .or_else(|| trace.uri.host());
        let attributes = [
            Attr::Method(method),
            Attr::Route(route),
            Attr::Status(status.as_u16()),
            Attr::UrlPath(trace.uri.path()),
            client
                .as_ref()
                .map_or(Attr::Absent, |c| Attr::Client(c.as_str())),
            host.map_or(Attr::Absent, Attr::Server),
        ];
        let error = status.is_server_error().then(|| status.to_string());
        encode_span(
            out,
            &SpanOut {
                trace_id: trace.trace_id,
                span_id: trace.span_id,
                parent_id: trace.parent_id,
                trace_state: &trace.trace_state,
                name: &[method, " ", route],
                kind: 2,
                start_ns: trace.start_ns,
                end_ns: at(end).max(trace.start_ns),
                attributes: &attributes,
                events,
                error: error.as_deref(),
            },
            encoding,
        );
        inner.exporter.push(out, spans);
    }
}

/// A request's per-boundary figures, read from the stack's instrumentation.
pub(crate) struct Timings<'a> {
    pub(crate) names: &'a [Box<str>],
    pub(crate) slots: &'a [crate::instrument::request::Slot],
    pub(crate) spans: &'a [crate::instrument::timings::Span],
    pub(crate) threshold: u64,
}

/// One boundary's place and figures in a request (its name by index: kept in a thread's
/// scratch between requests).
struct EntryTiming {
    index: usize,
    first: u64,
    last: u64,
    exclusive_ns: u64,
    wall_ns: u64,
    /// The longest poll, in ticks (converted only for a blocking event).
    worst: u64,
    blocking: bool,
}

impl Timings<'_> {
    /// Whether a poll reached the blocking threshold (read without building the entries, as
    /// the requests that are not kept need no more).
    fn blocked(&self) -> bool {
        self.threshold > 0
            && self
                .slots
                .iter()
                .any(|s| s.worst.load(std::sync::atomic::Ordering::Relaxed) >= self.threshold)
    }

    /// The boundaries that ran, in stack order.
    fn entries(&self, out: &mut Vec<EntryTiming>) {
        use std::sync::atomic::Ordering::Relaxed;
        let walls = crate::instrument::timings::walls_excluding_inner(self.slots, self.spans);
        for ((index, slot), wall) in self.slots.iter().enumerate().zip(walls) {
            if !slot.ran() {
                continue;
            }
            let first = slot.first.load(Relaxed);
            let worst = slot.worst.load(Relaxed);
            out.push(EntryTiming {
                index,
                first,
                last: slot.last.load(Relaxed).max(first),
                exclusive_ns: ticks_to_ns(slot.exclusive.load(Relaxed)),
                wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
                worst,
                blocking: self.threshold > 0 && worst >= self.threshold,
            });
        }
    }
}

#[cfg(test)]
mod address_tests {
    #[test]
    fn a_host_loses_its_port() {
        for (host, name) in [
            ("example.com:8080", "example.com"),
            ("example.com", "example.com"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("example.com:", "example.com:"),
            (":80", ""),
        ] {
            assert_eq!(super::without_port(host), name, "{host}");
        }
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_shows_no_credential() {
        let builder = super::Telemetry::builder()
            .endpoint("http://u:pw1@otel.example:4318?token=k2")
            .header("x-api-key", "t3");
        let shown = format!("{builder:?}");
        for secret in ["pw1", "k2", "t3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("x-api-key"), "{shown}");
    }
}
