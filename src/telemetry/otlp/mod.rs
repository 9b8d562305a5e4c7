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

// Protobuf, by hand: tags, varints, length-delimited fields. Every message's length is
// computed before it is written (no scratch buffer per message), constant parts are copied as
// constants, and nothing is allocated: a request with four spans is encoded in about a tenth
// of what a generic writer took (callgrind, bench/sinks.sh MODE=instructions).

#[inline]
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of `v` as a varint (lengths are mostly under 128: one comparison).
#[inline(always)]
fn varint_len(v: u64) -> usize {
    if v < 1 << 7 {
        1
    } else if v < 1 << 14 {
        2
    } else {
        (64 - v.leading_zeros() as usize).div_ceil(7)
    }
}

/// Bytes of a length-delimited field of `len` bytes (every field here has a one-byte tag).
#[inline]
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A length-delimited field: its one-byte tag, its length, its bytes.
#[inline]
fn bytes_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `KeyValue.key` (tag, length, bytes) of a key, made when compiling.
const fn key_field<const N: usize>(key: &str) -> [u8; N] {
    let key = key.as_bytes();
    assert!(key.len() < 128 && key.len() + 2 == N);
    let mut out = [0; N];
    out[0] = 0x0a;
    out[1] = key.len() as u8;
    copy_at(&mut out, 2, key);
    out
}

/// `bytes` copied into `out` from `at`, when compiling.
const fn copy_at(out: &mut [u8], at: usize, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
}

macro_rules! key_field {
    ($key:expr) => {{
        const FIELD: [u8; $key.len() + 2] = key_field($key);
        &FIELD
    }};
}

/// A `KeyValue` field of a double up to the value's 8 bytes (tag, length, key, the value's
/// tags), made when compiling.
const fn double_field<const N: usize>(tag: u8, key: &str) -> [u8; N] {
    let key = key.as_bytes();
    // KeyValue: the key's field, then the value's (tag, length 9, the double's tag, 8 bytes).
    assert!(key.len() + 13 < 128 && key.len() + 7 == N);
    let mut out = [0; N];
    out[0] = tag;
    out[1] = (key.len() + 13) as u8;
    out[2] = 0x0a;
    out[3] = key.len() as u8;
    copy_at(&mut out, 4, key);
    out[N - 3] = 0x12;
    out[N - 2] = 0x09;
    out[N - 1] = 0x21;
    out
}

const SPAN_EXCLUSIVE: [u8; EXCLUSIVE_MS.len() + 7] = double_field(0x4a, EXCLUSIVE_MS);
const SPAN_WALL: [u8; WALL_MS.len() + 7] = double_field(0x4a, WALL_MS);
const EVENT_EXCLUSIVE: [u8; EXCLUSIVE_MS.len() + 7] = double_field(0x1a, EXCLUSIVE_MS);
const EVENT_WALL: [u8; WALL_MS.len() + 7] = double_field(0x1a, WALL_MS);
/// Bytes of the exclusive and wall times as two `KeyValue` fields.
const TIME_ATTRS: usize = EXCLUSIVE_MS.len() + 7 + 8 + WALL_MS.len() + 7 + 8;

/// The exclusive and wall times as two `KeyValue` fields (their heads from [`double_field`],
/// for a span or an event), put together on the stack and appended in one copy.
#[inline(always)]
fn put_times(
    out: &mut Vec<u8>,
    (exclusive_head, exclusive_ms): (&[u8; EXCLUSIVE_MS.len() + 7], f64),
    (wall_head, wall_ms): (&[u8; WALL_MS.len() + 7], f64),
) {
    let mut attrs = [0u8; TIME_ATTRS];
    let (exclusive, wall) = attrs.split_at_mut(exclusive_head.len() + 8);
    exclusive[..exclusive_head.len()].copy_from_slice(exclusive_head);
    exclusive[exclusive_head.len()..].copy_from_slice(&exclusive_ms.to_bits().to_le_bytes());
    wall[..wall_head.len()].copy_from_slice(wall_head);
    wall[wall_head.len()..].copy_from_slice(&wall_ms.to_bits().to_le_bytes());
    out.extend_from_slice(&attrs);
}

/// `Span.trace_id` and `Span.span_id` as fields, put together on the stack.
#[inline(always)]
fn ids_fields(trace_id: u128, span_id: u64) -> [u8; 28] {
    let mut ids = [0u8; 28];
    ids[..2].copy_from_slice(&[0x0a, 16]);
    ids[2..18].copy_from_slice(&trace_id.to_be_bytes());
    ids[18..20].copy_from_slice(&[0x12, 8]);
    ids[20..].copy_from_slice(&span_id.to_be_bytes());
    ids
}

/// `Span.kind`, `start_time_unix_nano` and `end_time_unix_nano` as fields.
#[inline(always)]
fn times_fields(kind: u8, start_ns: u64, end_ns: u64) -> [u8; 20] {
    let mut times = [0u8; 20];
    times[..3].copy_from_slice(&[0x30, kind & 0x7f, 0x39]);
    times[3..11].copy_from_slice(&start_ns.to_le_bytes());
    times[11] = 0x41;
    times[12..].copy_from_slice(&end_ns.to_le_bytes());
    times
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

/// Bytes of an `AnyValue` message.
#[inline]
fn value_len(value: Value<'_>) -> usize {
    match value {
        Value::Str(s) => field_len(s.len()),
        Value::Int(i) => 1 + varint_len(i as u64),
        Value::Double(_) => 9,
    }
}

/// Bytes of an attribute as a `KeyValue` field (0 if absent).
#[inline(always)]
fn attr_field_len(attr: Attr<'_>) -> usize {
    match attr {
        Attr::Absent => 0,
        _ => field_len(2 + attr.key().len() + field_len(value_len(attr.value()))),
    }
}

/// A `KeyValue` with its tag; `key` is [`key_field`]'s.
#[inline(always)]
fn put_attr<const N: usize>(out: &mut Vec<u8>, tag: u8, key: &[u8; N], value: Value<'_>) {
    if let Value::Str(s) = value {
        if N + 4 + s.len() < 128 {
            // Every length one byte (the common case): the attribute up to its text put
            // together on the stack, then the text.
            const { assert!(N + 6 <= 64) };
            let mut head = [0u8; 64];
            head[0] = tag;
            head[1] = (N + 4 + s.len()) as u8;
            head[2..2 + N].copy_from_slice(key);
            head[2 + N..6 + N].copy_from_slice(&[0x12, (2 + s.len()) as u8, 0x0a, s.len() as u8]);
            out.extend_from_slice(&head[..6 + N]);
            out.extend_from_slice(s.as_bytes());
            return;
        }
    }
    let len = value_len(value);
    out.push(tag);
    varint(out, (N + field_len(len)) as u64);
    out.extend_from_slice(key);
    match value {
        Value::Str(s) => {
            out.push(0x12);
            varint(out, len as u64);
            bytes_field(out, 0x0a, s.as_bytes());
        }
        Value::Int(i) => {
            // At most 11 bytes: the length is one byte.
            out.extend_from_slice(&[0x12, len as u8, 0x18]);
            varint(out, i as u64);
        }
        Value::Double(d) => {
            out.extend_from_slice(&[0x12, 0x09, 0x21]);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
    }
}

/// An attribute as a `KeyValue` field with tag `tag`. Inlined where the attributes are a
/// list of known kinds, so the match resolves when compiling.
#[inline(always)]
fn attr(out: &mut Vec<u8>, tag: u8, attr: Attr<'_>) {
    let value = attr.value();
    match attr {
        Attr::Method(_) => put_attr(out, tag, key_field!(METHOD), value),
        Attr::Route(_) => put_attr(out, tag, key_field!(ROUTE), value),
        Attr::Status(_) => put_attr(out, tag, key_field!(STATUS), value),
        Attr::UrlPath(_) => put_attr(out, tag, key_field!(URL_PATH), value),
        Attr::Client(_) => put_attr(out, tag, key_field!(CLIENT), value),
        Attr::Server(_) => put_attr(out, tag, key_field!(SERVER), value),
        Attr::Middleware(_) => put_attr(out, tag, key_field!(MIDDLEWARE), value),
        Attr::ExclusiveMs(_) => put_attr(out, tag, key_field!(EXCLUSIVE_MS), value),
        Attr::WallMs(_) => put_attr(out, tag, key_field!(WALL_MS), value),
        Attr::PollMs(_) => put_attr(out, tag, key_field!(POLL_MS), value),
        Attr::Service(_) => put_attr(out, tag, key_field!(SERVICE), value),
        Attr::Absent => {}
    }
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

#[inline(never)]
fn json_event(out: &mut Vec<u8>, event: &EventOut<'_>) {
    if !out.is_empty() {
        out.push(b',');
    }
    let _ = write!(out, "{{\"timeUnixNano\":\"{}\",\"name\":", event.time_ns);
    json_string(out, event.name);
    out.extend_from_slice(b",\"attributes\":");
    json_attributes(out, event.attributes);
    out.push(b'}');
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

#[inline(never)]
fn json_span(out: &mut Vec<u8>, span: &SpanOut<'_>) {
    if !out.is_empty() {
        out.push(b',');
    }
    let _ = write!(
        out,
        "{{\"traceId\":\"{:032x}\",\"spanId\":\"{:016x}\"",
        span.trace_id, span.span_id
    );
    if !span.trace_state.is_empty() {
        out.extend_from_slice(b",\"traceState\":");
        json_string(out, span.trace_state);
    }
    if span.parent_id != 0 {
        let _ = write!(out, ",\"parentSpanId\":\"{:016x}\"", span.parent_id);
    }
    out.extend_from_slice(b",\"name\":");
    json_string(out, &span.name.concat());
    let _ = write!(
        out,
        ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":",
        span.kind, span.start_ns, span.end_ns
    );
    json_attributes(out, span.attributes);
    out.extend_from_slice(b",\"events\":[");
    out.extend_from_slice(span.events);
    out.push(b']');
    if let Some(message) = span.error {
        out.extend_from_slice(b",\"status\":{\"code\":2,\"message\":");
        json_string(out, message);
        out.push(b'}');
    }
    out.push(b'}');
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_attributes(out: &mut Vec<u8>, attrs: &[Attr<'_>]) {
    out.push(b'[');
    for (i, a) in attrs
        .iter()
        .filter(|a| !matches!(a, Attr::Absent))
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        json_string(out, a.key());
        out.extend_from_slice(b",\"value\":{");
        match a.value() {
            Value::Str(s) => {
                out.extend_from_slice(b"\"stringValue\":");
                json_string(out, s);
            }
            Value::Int(n) => {
                let _ = write!(out, "\"intValue\":\"{n}\"");
            }
            Value::Double(d) => {
                let _ = write!(out, "\"doubleValue\":{d}");
            }
        }
        out.extend_from_slice(b"}}");
    }
    out.push(b']');
}

mod export;

#[cfg(test)]
use self::export::Envelope;
pub(crate) use self::export::{Exporter, Target};

#[cfg(test)]
mod tests;
