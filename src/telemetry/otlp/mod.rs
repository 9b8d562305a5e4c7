//! The OTLP/HTTP exporter: spans encoded once, at the end of their request, as OTLP protobuf
//! (or JSON) `Span` messages, queued in one buffer, and sent in batches from a thread of its
//! own inside an `ExportTraceServiceRequest`.
//!
//! Written by hand rather than on the OpenTelemetry SDK and its OTLP exporter: measured with
//! bench/sinks.sh, the SDK cost about 1.5 µs to make a span and 4.6 µs to export one (its span
//! record, the conversion to the OTLP message, prost, the post), which put traces of every
//! request at 2.2× the CPU of the server without them; the target is 1.15×.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::http_client::HttpClient;
use crate::ConfigError;

/// Spans waiting, at most; more are dropped (counted).
const MAX_QUEUED: usize = 16384;
/// Bytes waiting, at most: a client decides whether its requests are traced (`traceparent`)
/// and how long their paths are, so the queue is bounded in bytes too.
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// A batch buffer larger than this is not kept for the next batch.
const KEPT_CAPACITY: usize = 4 << 20;
/// A batch is sent at this many spans, or every second.
const BATCH: usize = 2048;
const TICK: Duration = Duration::from_secs(1);

// Attribute keys: the semantic conventions' and callnext's own.
const METHOD: &str = "http.request.method";
const ROUTE: &str = "http.route";
const STATUS: &str = "http.response.status_code";
const URL_PATH: &str = "url.path";
const CLIENT: &str = "client.address";
const SERVER: &str = "server.address";
const MIDDLEWARE: &str = "callnext.middleware";
const EXCLUSIVE_MS: &str = "callnext.exclusive_ms";
const WALL_MS: &str = "callnext.wall_ms";
const POLL_MS: &str = "callnext.poll_ms";
const SERVICE: &str = "service.name";

/// An attribute of a span, an event or the resource. Its key is fixed by its kind, so the
/// protobuf writer copies the key's bytes as a constant made when compiling.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attr<'a> {
    Method(&'a str),
    Route(&'a str),
    Status(u16),
    UrlPath(&'a str),
    Client(&'a str),
    Server(&'a str),
    Middleware(&'a str),
    ExclusiveMs(f64),
    WallMs(f64),
    PollMs(f64),
    Service(&'a str),
    /// None: written as nothing (an optional attribute, in a list of fixed length whose
    /// encoding the compiler can unroll).
    Absent,
}

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
}

impl<'a> Attr<'a> {
    fn key(self) -> &'static str {
        match self {
            Attr::Method(_) => METHOD,
            Attr::Route(_) => ROUTE,
            Attr::Status(_) => STATUS,
            Attr::UrlPath(_) => URL_PATH,
            Attr::Client(_) => CLIENT,
            Attr::Server(_) => SERVER,
            Attr::Middleware(_) => MIDDLEWARE,
            Attr::ExclusiveMs(_) => EXCLUSIVE_MS,
            Attr::WallMs(_) => WALL_MS,
            Attr::PollMs(_) => POLL_MS,
            Attr::Service(_) => SERVICE,
            Attr::Absent => "",
        }
    }

    fn value(self) -> Value<'a> {
        match self {
            Attr::Method(s)
            | Attr::Route(s)
            | Attr::UrlPath(s)
            | Attr::Client(s)
            | Attr::Server(s)
            | Attr::Middleware(s)
            | Attr::Service(s) => Value::Str(s),
            Attr::Absent => Value::Str(""),
            Attr::Status(code) => Value::Int(i64::from(code)),
            Attr::ExclusiveMs(d) | Attr::WallMs(d) | Attr::PollMs(d) => Value::Double(d),
        }
    }
}

/// A span to encode.
pub(crate) struct SpanOut<'a> {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    /// 0: none (a root span).
    pub(crate) parent_id: u64,
    pub(crate) trace_state: &'a str,
    /// The name, in pieces written one after the other.
    pub(crate) name: &'a [&'a str],
    /// 1 internal, 2 server.
    pub(crate) kind: u8,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) attributes: &'a [Attr<'a>],
    /// Its events, each already written by [`encode_event`] in the same encoding.
    pub(crate) events: &'a [u8],
    /// An error status with this message.
    pub(crate) error: Option<&'a str>,
}

/// An event of a span.
pub(crate) struct EventOut<'a> {
    pub(crate) name: &'a str,
    pub(crate) time_ns: u64,
    pub(crate) attributes: &'a [Attr<'a>],
}

/// How spans are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

/// A middleware's span: an internal span, child of the server span, with its exclusive and
/// wall times (the spans a request has several of).
pub(crate) struct ChildOut<'a> {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) parent_id: u64,
    pub(crate) trace_state: &'a str,
    pub(crate) name: &'a str,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) exclusive_ms: f64,
    pub(crate) wall_ms: f64,
    /// Its events, each already written by [`encode_event`] in the same encoding.
    pub(crate) events: &'a [u8],
}

/// A middleware's span, as [`encode_span`] would write it; in protobuf, its fixed parts put
/// together on the stack and appended in a few copies (a third of the generic writer's cost).
pub(crate) fn encode_child(out: &mut Vec<u8>, span: &ChildOut<'_>, encoding: Encoding) {
    if encoding == Encoding::Json {
        return json_span(
            out,
            &SpanOut {
                trace_id: span.trace_id,
                span_id: span.span_id,
                parent_id: span.parent_id,
                trace_state: span.trace_state,
                name: &[span.name],
                kind: 1,
                start_ns: span.start_ns,
                end_ns: span.end_ns,
                attributes: &[
                    Attr::ExclusiveMs(span.exclusive_ms),
                    Attr::WallMs(span.wall_ms),
                ],
                events: span.events,
                error: None,
            },
        );
    }
    const TIMES: usize = 20;
    let name = span.name.as_bytes();
    let mut len = 28 + 10 + field_len(name.len()) + TIMES + TIME_ATTRS + span.events.len();
    if !span.trace_state.is_empty() {
        len += field_len(span.trace_state.len());
    }
    out.reserve(len + 11);
    out.push(0x12);
    varint(out, len as u64);
    out.extend_from_slice(&ids_fields(span.trace_id, span.span_id));
    if !span.trace_state.is_empty() {
        bytes_field(out, 0x1a, span.trace_state.as_bytes());
    }
    let mut parent = [0u8; 10];
    parent[..2].copy_from_slice(&[0x22, 8]);
    parent[2..].copy_from_slice(&span.parent_id.to_be_bytes());
    out.extend_from_slice(&parent);
    bytes_field(out, 0x2a, name);
    // kind 1: internal
    out.extend_from_slice(&times_fields(1, span.start_ns, span.end_ns));
    put_times(
        out,
        (&SPAN_EXCLUSIVE, span.exclusive_ms),
        (&SPAN_WALL, span.wall_ms),
    );
    out.extend_from_slice(span.events);
}

/// A `middleware` event (a middleware's name, exclusive and wall times), as [`encode_event`]
/// would write it; in protobuf, with its fixed parts put together on the stack.
pub(crate) fn encode_middleware_event(
    out: &mut Vec<u8>,
    time_ns: u64,
    name: &str,
    exclusive_ms: f64,
    wall_ms: f64,
    encoding: Encoding,
) {
    if encoding == Encoding::Json {
        return json_event(
            out,
            &EventOut {
                name: "middleware",
                time_ns,
                attributes: &[
                    Attr::Middleware(name),
                    Attr::ExclusiveMs(exclusive_ms),
                    Attr::WallMs(wall_ms),
                ],
            },
        );
    }
    const HEAD: usize = 9 + 2 + "middleware".len();
    let value_len = field_len(name.len());
    let name_attr = 2 + MIDDLEWARE.len() + field_len(value_len);
    let len = HEAD + field_len(name_attr) + TIME_ATTRS;
    out.reserve(len + 11);
    out.push(0x5a);
    varint(out, len as u64);
    let mut head = [0u8; HEAD];
    head[0] = 0x09;
    head[1..9].copy_from_slice(&time_ns.to_le_bytes());
    head[9..11].copy_from_slice(&[0x12, 10]);
    head[11..].copy_from_slice(b"middleware");
    out.extend_from_slice(&head);
    out.push(0x1a);
    varint(out, name_attr as u64);
    out.extend_from_slice(key_field!(MIDDLEWARE));
    out.push(0x12);
    varint(out, value_len as u64);
    bytes_field(out, 0x0a, name.as_bytes());
    put_times(
        out,
        (&EVENT_EXCLUSIVE, exclusive_ms),
        (&EVENT_WALL, wall_ms),
    );
}

/// One `Event` message, as the element of `Span.events` (field 11, with its tag and length),
/// appended to `out`; in JSON, an object (after a comma unless `out` is empty). Inlined, as
/// [`encode_span`] is.
#[inline(always)]
pub(crate) fn encode_event(out: &mut Vec<u8>, event: &EventOut<'_>, encoding: Encoding) {
    match encoding {
        Encoding::Protobuf => {
            let len = 9
                + field_len(event.name.len())
                + event
                    .attributes
                    .iter()
                    .map(|a| attr_field_len(*a))
                    .sum::<usize>();
            out.reserve(len + 11);
            out.push(0x5a);
            varint(out, len as u64);
            let mut time = [0u8; 9];
            time[0] = 0x09;
            time[1..].copy_from_slice(&event.time_ns.to_le_bytes());
            out.extend_from_slice(&time);
            bytes_field(out, 0x12, event.name.as_bytes());
            for a in event.attributes {
                attr(out, 0x1a, *a);
            }
        }
        Encoding::Json => json_event(out, event),
    }
}

/// One `Span` message, as the element of `ScopeSpans.spans` (field 2, with its tag and
/// length), appended to `out`; in JSON, an object (after a comma unless `out` is empty).
/// Inlined: with the span's attributes a list of known kinds, the compiler unrolls their
/// encoding (a third of a kept request's cost when it did not).
#[inline(always)]
pub(crate) fn encode_span(out: &mut Vec<u8>, span: &SpanOut<'_>, encoding: Encoding) {
    match encoding {
        Encoding::Protobuf => protobuf_span(out, span),
        Encoding::Json => json_span(out, span),
    }
}

#[inline(always)]
fn protobuf_span(out: &mut Vec<u8>, span: &SpanOut<'_>) {
    let name_len = span.name.iter().map(|p| p.len()).sum::<usize>();
    let mut len = 18 + 10 + field_len(name_len) + 2 + 9 + 9 + span.events.len();
    if !span.trace_state.is_empty() {
        len += field_len(span.trace_state.len());
    }
    if span.parent_id != 0 {
        len += 10;
    }
    for a in span.attributes {
        len += attr_field_len(*a);
    }
    if let Some(message) = span.error {
        len += field_len(field_len(message.len()) + 2);
    }
    out.reserve(len + 11);
    out.push(0x12);
    varint(out, len as u64);
    out.extend_from_slice(&ids_fields(span.trace_id, span.span_id));
    if !span.trace_state.is_empty() {
        bytes_field(out, 0x1a, span.trace_state.as_bytes());
    }
    if span.parent_id != 0 {
        let mut parent = [0u8; 10];
        parent[..2].copy_from_slice(&[0x22, 8]);
        parent[2..].copy_from_slice(&span.parent_id.to_be_bytes());
        out.extend_from_slice(&parent);
    }
    out.push(0x2a);
    varint(out, name_len as u64);
    for piece in span.name {
        out.extend_from_slice(piece.as_bytes());
    }
    out.extend_from_slice(&times_fields(span.kind, span.start_ns, span.end_ns));
    for a in span.attributes {
        attr(out, 0x4a, *a);
    }
    out.extend_from_slice(span.events);
    if let Some(message) = span.error {
        out.push(0x7a);
        varint(out, (field_len(message.len()) + 2) as u64);
        bytes_field(out, 0x12, message.as_bytes());
        // STATUS_CODE_ERROR
        out.extend_from_slice(&[0x18, 2]);
    }
}

mod export;
mod json;
mod wire;

use self::json::{json_attributes, json_event, json_span};
#[allow(clippy::wildcard_imports)]
use self::wire::*;

#[cfg(test)]
use self::export::Envelope;
pub(crate) use self::export::{Exporter, Target};

#[cfg(test)]
mod tests;
