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

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::instrument::clock::ticks_to_duration;
use crate::otlp::{encode_span, Encoding, EventOut, Exporter, SpanOut, Target, Value};
use crate::{ClientIp, ConfigError, Request, Response};

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

/// The trace a request belongs to: in its extensions (and its response's) when the stack has
/// [`Telemetry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id's 32 and the span id's 16 lowercase hex digits (kept inline: copying a
    /// context allocates nothing).
    hex: [u8; 48],
    sampled: bool,
}

impl TraceContext {
    fn new(trace_id: u128, span_id: u64, sampled: bool) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 48];
        for (i, h) in hex[..32].iter_mut().enumerate() {
            *h = DIGITS[((trace_id >> (124 - 4 * i)) & 0xf) as usize];
        }
        for (i, h) in hex[32..].iter_mut().enumerate() {
            *h = DIGITS[((span_id >> (60 - 4 * i)) & 0xf) as usize];
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
#[derive(Debug, Clone)]
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
    context: TraceContext,
    trace_id: u128,
    span_id: u64,
    parent_id: u64,
    trace_state: String,
    sampled: bool,
    method: http::Method,
    path: String,
    client: Option<IpAddr>,
    host: Option<String>,
    /// The clock's ticks and the wall time (ns since the epoch) when it started.
    ticks: u64,
    start_ns: u64,
}

/// A random non-zero id (from the operating system's CSPRNG through uuid's generator).
fn random_u128() -> u128 {
    uuid::Uuid::new_v4().as_u128().max(1)
}

fn random_u64() -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64).max(1)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

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
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent);
        let trace_state = match parent {
            Some(_) => headers
                .get("tracestate")
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
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .map(|host| match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host,
            })
            .map(str::to_owned);
        let context = TraceContext::new(trace_id, span_id, sampled);
        req.extensions_mut().insert(context);
        Box::new(RequestTrace {
            context,
            trace_id,
            span_id,
            parent_id,
            trace_state,
            sampled,
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            client: ClientIp::of(req).map(|ip| ip.0),
            host,
            ticks: crate::instrument::clock::now(),
            start_ns: now_ns(),
        })
    }

    /// Ends the request's trace: if it is kept, its spans are encoded and queued.
    pub(crate) fn finish(
        &self,
        trace: Box<RequestTrace>,
        route: &str,
        res: &mut Response,
        timings: Option<Timings<'_>>,
    ) {
        let inner = &self.inner;
        let status = res.status();
        let keep = trace.sampled
            || (inner.keep_errors && status.is_server_error())
            || (inner.keep_blocking && timings.as_ref().is_some_and(Timings::blocked));
        res.extensions_mut().insert(trace.context);
        if !keep {
            return;
        }
        // Only a kept request's figures are read out.
        let entries = timings.as_ref().map(Timings::entries).unwrap_or_default();
        let end_ns = now_ns();
        let at = |ticks: u64| {
            trace.start_ns.saturating_add(
                u64::try_from(ticks_to_duration(ticks.saturating_sub(trace.ticks)).as_nanos())
                    .unwrap_or(u64::MAX),
            )
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let encoding = inner.exporter.encoding;
        let mut out = Vec::with_capacity(256 * (1 + entries.len()));
        let mut spans = 1;
        let mut server_events = Vec::new();
        fn blocking<'a>(name: &'a str, time_ns: u64, poll_ms: f64, route: &'a str) -> EventOut<'a> {
            EventOut {
                name: "blocking",
                time_ns,
                attributes: vec![
                    ("callnext.middleware", Value::Str(name)),
                    ("callnext.poll_ms", Value::Double(poll_ms)),
                    ("http.route", Value::Str(route)),
                ],
            }
        }
        let blocking_event = |e: &EntryTiming<'_>| (at(e.last), ms(e.worst_poll));
        for e in &entries {
            match inner.middlewares {
                MiddlewareSpans::Spans => {
                    let events: Vec<EventOut<'_>> = e
                        .blocking
                        .then(|| {
                            let (time, poll) = blocking_event(e);
                            blocking(e.name, time, poll, route)
                        })
                        .into_iter()
                        .collect();
                    encode_span(
                        &mut out,
                        &SpanOut {
                            trace_id: trace.trace_id,
                            span_id: random_u64(),
                            parent_id: trace.span_id,
                            trace_state: &trace.trace_state,
                            name: e.name,
                            kind: 1,
                            start_ns: at(e.first),
                            end_ns: at(e.last),
                            attributes: &[
                                ("callnext.exclusive_ms", Value::Double(ms(e.exclusive))),
                                ("callnext.wall_ms", Value::Double(ms(e.wall))),
                            ],
                            events: &events,
                            error: None,
                        },
                        encoding,
                    );
                    spans += 1;
                }
                MiddlewareSpans::Events => {
                    server_events.push(EventOut {
                        name: "middleware",
                        time_ns: at(e.first),
                        attributes: vec![
                            ("callnext.middleware", Value::Str(e.name)),
                            ("callnext.exclusive_ms", Value::Double(ms(e.exclusive))),
                            ("callnext.wall_ms", Value::Double(ms(e.wall))),
                        ],
                    });
                    if e.blocking {
                        let (time, poll) = blocking_event(e);
                        server_events.push(blocking(e.name, time, poll, route));
                    }
                }
                MiddlewareSpans::Off => {
                    if e.blocking {
                        let (time, poll) = blocking_event(e);
                        server_events.push(blocking(e.name, time, poll, route));
                    }
                }
            }
        }
        // Built by hand: `format!` and an address's `Display` were a fifth of a kept
        // request's cost (callgrind).
        let method = trace.method.as_str();
        let mut name = String::with_capacity(method.len() + 1 + route.len());
        name.push_str(method);
        name.push(' ');
        name.push_str(route);
        let client = trace.client.map(address_text);
        let mut attributes = Vec::with_capacity(6);
        attributes.extend([
            ("http.request.method", Value::Str(trace.method.as_str())),
            ("http.route", Value::Str(route)),
            (
                "http.response.status_code",
                Value::Int(i64::from(status.as_u16())),
            ),
            ("url.path", Value::Str(&trace.path)),
        ]);
        if let Some(client) = &client {
            attributes.push(("client.address", Value::Str(client)));
        }
        if let Some(host) = &trace.host {
            attributes.push(("server.address", Value::Str(host)));
        }
        let error = status.is_server_error().then(|| status.to_string());
        encode_span(
            &mut out,
            &SpanOut {
                trace_id: trace.trace_id,
                span_id: trace.span_id,
                parent_id: trace.parent_id,
                trace_state: &trace.trace_state,
                name: &name,
                kind: 2,
                start_ns: trace.start_ns,
                end_ns: end_ns.max(trace.start_ns),
                attributes: &attributes,
                events: &server_events,
                error: error.as_deref(),
            },
            encoding,
        );
        inner.exporter.push(&out, spans);
    }
}

/// An address as text; IPv4 digit by digit (the common case, without the formatting
/// machinery), IPv6 by its `Display`.
fn address_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// A request's per-boundary figures, read from the stack's instrumentation.
pub(crate) struct Timings<'a> {
    pub(crate) names: &'a [Box<str>],
    pub(crate) slots: &'a [crate::instrument::request::Slot],
    pub(crate) spans: &'a [crate::instrument::timings::Span],
    pub(crate) threshold: u64,
}

/// One boundary's place and figures in a request.
struct EntryTiming<'a> {
    name: &'a str,
    first: u64,
    last: u64,
    exclusive: Duration,
    wall: Duration,
    worst_poll: Duration,
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
    fn entries(&self) -> Vec<EntryTiming<'_>> {
        use std::sync::atomic::Ordering::Relaxed;
        let walls = crate::instrument::timings::walls_excluding_inner(self.slots, self.spans);
        self.names
            .iter()
            .zip(self.slots)
            .zip(walls)
            .filter(|((_, slot), _)| slot.ran())
            .map(|((name, slot), wall)| {
                let worst = slot.worst.load(Relaxed);
                EntryTiming {
                    name,
                    first: slot.first.load(Relaxed),
                    last: slot.last.load(Relaxed).max(slot.first.load(Relaxed)),
                    exclusive: ticks_to_duration(slot.exclusive.load(Relaxed)),
                    wall,
                    worst_poll: ticks_to_duration(worst),
                    blocking: self.threshold > 0 && worst >= self.threshold,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod address_tests {
    #[test]
    fn addresses_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "203.0.113.5",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(super::address_text(ip), ip.to_string());
        }
    }
}
