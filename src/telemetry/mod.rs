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
//!   `tracestate` is kept) when it comes from a trusted proxy ([`TrustIncoming`]; always or
//!   never, if set so); otherwise, or without one, a new trace is sampled with
//!   `sampling_ratio`. Traces sampled only because a caller said so are bounded
//!   (`max_incoming_sampled` a second, 100 by default), so a client cannot make the server
//!   export every request. Traces with a 5xx or a blocking poll are kept whatever the
//!   sampling said (unless turned off).
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

pub use self::builder::TelemetryBuilder;
use self::context::{
    now_ns, random_u128, random_u64, traceparent, without_port, TRACEPARENT, TRACESTATE,
};
use self::timings::EntryTiming;
pub(crate) use self::timings::Timings;
mod builder;
mod context;
mod spans;
mod timings;

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use self::otlp::{
    encode_child, encode_event, encode_middleware_event, encode_span, Attr, ChildOut, Encoding,
    EventOut, Exporter, SpanOut, Target,
};
use crate::clock::ticks::ticks_to_ns;
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

/// Whose `traceparent` is continued: its trace id, parent and sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TrustIncoming {
    /// Requests whose peer is one of the stack's trusted proxies (the default): a client
    /// reaching the server directly cannot choose its trace id or force sampling.
    #[default]
    TrustedProxies,
    /// Every request's (a service only other services of the same deployment reach).
    Always,
    /// No request's: every trace starts here.
    Never,
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

/// Exports spans; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    exporter: Arc<Exporter>,
    ratio_bound: u64,
    trust: TrustIncoming,
    /// Traces sampled only because their caller said so: at most `max_incoming` a second.
    incoming: crate::clock::PerSecond,
    max_incoming: u32,
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

impl Telemetry {
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
    pub(crate) fn start(
        &self,
        req: &mut Request,
        trusted: &crate::TrustedProxies,
    ) -> Box<RequestTrace> {
        let inner = &*self.inner;
        let trusts = match inner.trust {
            TrustIncoming::Always => true,
            TrustIncoming::Never => false,
            TrustIncoming::TrustedProxies => crate::client_ip::from_trusted_proxy(req, trusted),
        };
        let headers = req.headers();
        let parent = headers
            .get(TRACEPARENT)
            .filter(|_| trusts)
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
        let by_ratio = |trace: u128| {
            let low = (trace as u64) >> 1;
            inner.ratio_bound == u64::MAX || low < inner.ratio_bound
        };
        let (trace_id, parent_id, sampled) = match parent {
            // Sampled by the caller where the ratio would not have: within the bound only.
            Some((trace, parent, true)) if !by_ratio(trace) => {
                (trace, parent, inner.incoming.admit(inner.max_incoming))
            }
            Some((trace, parent, sampled)) => (trace, parent, sampled),
            None => {
                let trace = random_u128();
                (trace, 0, by_ratio(trace))
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
            ticks: crate::clock::ticks::now(),
            start_ns: now_ns(),
        });
        req.extensions_mut().insert(context);
        trace
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
