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

/// What surrounds a batch of spans in an `ExportTraceServiceRequest`: the resource and the
/// scope before them (and, in JSON, the closing brackets after). A batch starts with room for
/// the part before, filled in once the batch's length is known, so the spans queued are sent
/// without being copied.
struct Envelope {
    encoding: Encoding,
    /// Protobuf: `ResourceSpans.resource` and `ScopeSpans.scope` as fields. JSON: the text
    /// before the first span, and nothing.
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Envelope {
    fn new(service: &str, encoding: Encoding) -> Self {
        match encoding {
            Encoding::Protobuf => {
                let mut service_attr = Vec::new();
                attr(&mut service_attr, 0x0a, Attr::Service(service));
                let mut resource = Vec::new();
                bytes_field(&mut resource, 0x0a, &service_attr);
                let mut scope = Vec::new();
                let mut name = Vec::new();
                bytes_field(&mut name, 0x0a, b"callnext");
                bytes_field(&mut scope, 0x0a, &name);
                Self {
                    encoding,
                    resource,
                    scope,
                }
            }
            Encoding::Json => {
                let mut head = b"{\"resourceSpans\":[{\"resource\":{\"attributes\":".to_vec();
                json_attributes(&mut head, &[Attr::Service(service)]);
                head.extend_from_slice(
                    b"},\"scopeSpans\":[{\"scope\":{\"name\":\"callnext\"},\"spans\":[",
                );
                Self {
                    encoding,
                    resource: head,
                    scope: Vec::new(),
                }
            }
        }
    }

    /// Bytes a batch starts with.
    fn room(&self) -> usize {
        match self.encoding {
            // Two tags and two lengths of at most 10 bytes around the resource and the scope.
            Encoding::Protobuf => 22 + self.resource.len() + self.scope.len(),
            Encoding::Json => self.resource.len(),
        }
    }

    /// Starts a batch in `out` (empty).
    fn start(&self, out: &mut Vec<u8>) {
        match self.encoding {
            Encoding::Protobuf => out.resize(self.room(), 0),
            Encoding::Json => out.extend_from_slice(&self.resource),
        }
    }

    /// The request's body: the batch completed in place.
    fn finish(&self, mut batch: Vec<u8>) -> Bytes {
        match self.encoding {
            Encoding::Protobuf => {
                let room = self.room();
                let spans = batch.len() - room;
                let scope_spans = self.scope.len() + spans;
                let resource_spans = self.resource.len() + field_len(scope_spans);
                let mut head = Vec::with_capacity(room);
                head.push(0x0a);
                varint(&mut head, resource_spans as u64);
                head.extend_from_slice(&self.resource);
                head.push(0x12);
                varint(&mut head, scope_spans as u64);
                head.extend_from_slice(&self.scope);
                let at = room - head.len();
                batch[at..room].copy_from_slice(&head);
                Bytes::from(batch).slice(at..)
            }
            Encoding::Json => {
                batch.extend_from_slice(b"]}]}]}");
                Bytes::from(batch)
            }
        }
    }
}

/// Spans waiting for the exporter thread.
#[derive(Default)]
struct Pending {
    /// The batch: room for the envelope's start, then encoded spans back to back (protobuf:
    /// each with its tag and length; JSON: separated by commas).
    bytes: Vec<u8>,
    spans: usize,
    flushes: Vec<mpsc::Sender<()>>,
    stop: bool,
}

/// The queue in front of the exporter thread, shared with the requests.
pub(crate) struct Exporter {
    pending: Mutex<Pending>,
    wake: Condvar,
    pub(crate) encoding: Encoding,
    envelope: Envelope,
    dropped: AtomicU64,
    sent: AtomicU64,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

/// Where and how the exporter sends.
pub(crate) struct Target {
    pub(crate) uri: http::Uri,
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub(crate) service: String,
    pub(crate) timeout: Duration,
}

impl Exporter {
    pub(crate) fn start(target: Target, encoding: Encoding) -> Result<Arc<Self>, ConfigError> {
        let exporter = Arc::new(Self {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            encoding,
            envelope: Envelope::new(&target.service, encoding),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ConfigError::invalid("endpoint", format!("cannot start the exporter: {e}"))
            })?;
        let this = Arc::clone(&exporter);
        std::thread::Builder::new()
            .name("callnext-otlp".to_owned())
            .spawn(move || this.run(&target, &runtime))
            .map_err(|e| {
                ConfigError::invalid("endpoint", format!("cannot start the exporter: {e}"))
            })?;
        Ok(exporter)
    }

    /// Queues spans encoded by [`encode_span`]; a full queue drops them (counted).
    pub(crate) fn push(&self, encoded: &[u8], spans: usize) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.stop
            || pending.spans + spans > MAX_QUEUED
            || pending.bytes.len() + encoded.len() > MAX_QUEUED_BYTES
        {
            drop(pending);
            self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
            return;
        }
        if pending.bytes.is_empty() {
            self.envelope.start(&mut pending.bytes);
        } else if self.encoding == Encoding::Json && pending.spans > 0 {
            pending.bytes.push(b',');
        }
        pending.bytes.extend_from_slice(encoded);
        // Woken once, when the batch fills: a condition variable's notify is a system call
        // even with no thread waiting, and the exporter may take a while to run.
        let wake = pending.spans < BATCH && pending.spans + spans >= BATCH;
        pending.spans += spans;
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Spans dropped (queue full or export failed) and sent, since the start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.dropped.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
        )
    }

    /// Waits (blocking, at most `timeout`) until what is queued has been sent or given up on.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = mpsc::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.stop {
                return false;
            }
            pending.flushes.push(ack);
        }
        self.wake.notify_one();
        done.recv_timeout(timeout).is_ok()
    }

    /// Sends what is queued (waiting at most `timeout`) and stops the thread.
    pub(crate) fn stop(&self, timeout: Duration) {
        self.flush(timeout);
        self.close();
    }

    /// Stops the thread once it has sent what is queued, without waiting for it.
    pub(crate) fn close(&self) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.wake.notify_one();
    }

    fn run(&self, target: &Target, runtime: &tokio::runtime::Runtime) {
        let client = HttpClient::new(target.timeout);
        // The next batch's buffer, allocated here rather than under the lock.
        let mut spare = Vec::new();
        loop {
            let (batch, spans, flushes, stop) = {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.spans < BATCH && pending.flushes.is_empty() && !pending.stop {
                    pending = self
                        .wake
                        .wait_timeout(pending, TICK)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                (
                    std::mem::replace(&mut pending.bytes, std::mem::take(&mut spare)),
                    std::mem::take(&mut pending.spans),
                    std::mem::take(&mut pending.flushes),
                    pending.stop,
                )
            };
            if spans > 0 {
                let capacity = batch.capacity();
                let body = self.envelope.finish(batch);
                match runtime.block_on(self.send(&client, target, body)) {
                    Ok(()) => {
                        self.sent.fetch_add(spans as u64, Ordering::Relaxed);
                    }
                    Err(err) => {
                        self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
                        tracing::warn!(url = %crate::redact::redact_urls(&target.uri.to_string()), spans, error = %err, "traces could not be exported");
                    }
                }
                spare = Vec::with_capacity(capacity.min(KEPT_CAPACITY));
            } else {
                spare = batch;
            }
            for ack in flushes {
                let _ = ack.send(());
            }
            if stop {
                break;
            }
        }
    }

    /// One export, tried twice on a connection error, a timeout, 429 or 5xx.
    async fn send(&self, client: &HttpClient, target: &Target, body: Bytes) -> Result<(), String> {
        let content_type = match self.encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut last = String::new();
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut req = http::Request::post(target.uri.clone())
                .header(http::header::CONTENT_TYPE, content_type);
            for (name, value) in &target.headers {
                req = req.header(name, value);
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| e.to_string())?;
            match client.send(req, target.timeout, 64 * 1024).await {
                Ok(res) if res.status().is_success() => return Ok(()),
                Ok(res) => {
                    last = format!("the collector answered {}", res.status());
                    let status = res.status();
                    if !(status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS)
                    {
                        return Err(last);
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    use super::*;

    fn attrs(list: &[KeyValue]) -> Vec<(String, String)> {
        list.iter()
            .map(|kv| {
                let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Any::StringValue(s)) => format!("s:{s}"),
                    Some(Any::IntValue(i)) => format!("i:{i}"),
                    Some(Any::DoubleValue(d)) => format!("d:{d}"),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), value)
            })
            .collect()
    }

    fn expected(list: &[Attr<'_>]) -> Vec<(String, String)> {
        list.iter()
            .filter(|a| !matches!(a, Attr::Absent))
            .map(|a| {
                let value = match a.value() {
                    Value::Str(s) => format!("s:{s}"),
                    Value::Int(i) => format!("i:{i}"),
                    Value::Double(d) => format!("d:{d}"),
                };
                (a.key().to_owned(), value)
            })
            .collect()
    }

    /// The queue is bounded in bytes as well as spans: a client decides whether its requests
    /// are traced and how long their paths are.
    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let exporter = Exporter::start(
            Target {
                // Nothing listens on the discard port: what is sent fails, which is counted.
                uri: "http://127.0.0.1:9/v1/traces".parse().unwrap(),
                headers: Vec::new(),
                service: "test".to_owned(),
                timeout: Duration::from_secs(1),
            },
            Encoding::Protobuf,
        )
        .unwrap();
        let big = vec![0u8; 1 << 20];
        // 40 MiB in 40 spans, far under the span limit, pushed within a few milliseconds: at
        // most one batch is taken meanwhile (every second), so 16 MiB fill up at least once.
        for _ in 0..40 {
            exporter.push(&big, 1);
        }
        let (dropped, _) = exporter.counts();
        assert!(dropped >= 1, "{dropped}");
        exporter.stop(Duration::from_secs(5));
        let (dropped, sent) = exporter.counts();
        assert_eq!((dropped, sent), (40, 0), "every span counted once");
    }

    /// Spans of every shape, with strings long enough for lengths of one, two and three bytes,
    /// encoded, put in their envelope and decoded by the OTLP project's own schemas.
    #[test]
    fn what_is_encoded_decodes_with_the_otlp_schemas() {
        let long = "x".repeat(200);
        let longer = "é".repeat(10_000);
        // Lengths around 128 with each key: one-byte lengths and longer ones.
        let near: Vec<String> = (104..=124).map(|n| "y".repeat(n)).collect();
        let mut texts = vec!["", "/", "GET", long.as_str(), longer.as_str()];
        texts.extend(near.iter().map(String::as_str));
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let envelope = Envelope::new(&format!("svc{long}"), encoding);
            let mut batch = Vec::new();
            envelope.start(&mut batch);
            let mut wanted = Vec::new();
            for (i, text) in texts.iter().enumerate() {
                let event_attrs = [
                    Attr::Middleware(text),
                    Attr::PollMs(12.5),
                    Attr::Route("/items/{id}"),
                ];
                let mut events = Vec::new();
                for k in 0..i % 3 {
                    encode_event(
                        &mut events,
                        &EventOut {
                            name: if k == 0 { "blocking" } else { text },
                            time_ns: 1_700_000_000_000_000_000 + k as u64,
                            attributes: &event_attrs,
                        },
                        encoding,
                    );
                }
                let span_attrs = [
                    Attr::Method("POST"),
                    Attr::Absent,
                    Attr::Route(text),
                    Attr::Status(if i % 2 == 0 { 200 } else { 503 }),
                    Attr::UrlPath(text),
                    Attr::Client("203.0.113.5"),
                    Attr::Server(text),
                    Attr::ExclusiveMs(0.001_25 * i as f64),
                    Attr::WallMs(1e-9),
                    Attr::Absent,
                ];
                let mut one = Vec::new();
                let error = (i % 2 == 1).then(|| format!("503 {text}"));
                let span = SpanOut {
                    trace_id: u128::MAX - i as u128,
                    span_id: (1 << (i * 12 % 60)) + i as u64,
                    parent_id: if i % 2 == 0 { 0 } else { 77 },
                    trace_state: if i == 3 { "vendor=a,other=b" } else { "" },
                    name: &["GET", " ", text],
                    kind: 1 + (i % 2) as u8,
                    start_ns: 1_700_000_000_000_000_000,
                    end_ns: 1_700_000_000_000_000_000 + i as u64 * 1000,
                    attributes: &span_attrs[..(4 + i).min(span_attrs.len())],
                    events: &events,
                    error: error.as_deref(),
                };
                encode_span(&mut one, &span, encoding);
                if encoding == Encoding::Json && i > 0 {
                    batch.push(b',');
                }
                batch.extend_from_slice(&one);
                wanted.push((
                    span.trace_id,
                    span.span_id,
                    span.parent_id,
                    span.trace_state.to_owned(),
                    format!("GET {text}"),
                    span.kind,
                    span.end_ns,
                    expected(span.attributes),
                    i % 3,
                    error.clone(),
                    expected(&event_attrs),
                ));
                // A middleware's span, written by its own writer.
                let child = ChildOut {
                    trace_id: span.trace_id,
                    span_id: 99 + i as u64,
                    parent_id: span.span_id,
                    trace_state: span.trace_state,
                    name: text,
                    start_ns: 1_700_000_000_000_000_000,
                    end_ns: 1_700_000_000_000_000_000 + 7,
                    exclusive_ms: 0.5 + i as f64,
                    wall_ms: 1e-7,
                    events: &events,
                };
                let mut one = Vec::new();
                encode_child(&mut one, &child, encoding);
                wanted.push((
                    child.trace_id,
                    child.span_id,
                    child.parent_id,
                    child.trace_state.to_owned(),
                    text.to_string(),
                    1,
                    child.end_ns,
                    expected(&[
                        Attr::ExclusiveMs(child.exclusive_ms),
                        Attr::WallMs(child.wall_ms),
                    ]),
                    i % 3,
                    None,
                    expected(&event_attrs),
                ));
                // A span with middleware events, written by their own writer.
                let mut middleware_events = Vec::new();
                for k in 0..i % 3 {
                    encode_middleware_event(
                        &mut middleware_events,
                        1_700_000_000_000_000_000 + k as u64,
                        text,
                        12.5,
                        0.125 * i as f64,
                        encoding,
                    );
                }
                let with_events = SpanOut {
                    span_id: 1000 + i as u64,
                    name: &[text],
                    attributes: &[],
                    events: &middleware_events,
                    error: None,
                    ..span
                };
                encode_span(&mut one, &with_events, encoding);
                wanted.push((
                    with_events.trace_id,
                    with_events.span_id,
                    with_events.parent_id,
                    with_events.trace_state.to_owned(),
                    text.to_string(),
                    with_events.kind,
                    with_events.end_ns,
                    Vec::new(),
                    i % 3,
                    None,
                    expected(&[
                        Attr::Middleware(text),
                        Attr::ExclusiveMs(12.5),
                        Attr::WallMs(0.125 * i as f64),
                    ]),
                ));
                if encoding == Encoding::Json {
                    batch.push(b',');
                }
                batch.extend_from_slice(&one);
            }
            let body = envelope.finish(batch);
            let request: ExportTraceServiceRequest = match encoding {
                Encoding::Protobuf => ExportTraceServiceRequest::decode(&body[..]).unwrap(),
                Encoding::Json => serde_json::from_slice(&body).unwrap(),
            };
            let rs = &request.resource_spans[0];
            assert_eq!(
                attrs(&rs.resource.as_ref().unwrap().attributes),
                [("service.name".to_owned(), format!("s:svc{long}"))]
            );
            let ss = &rs.scope_spans[0];
            assert_eq!(ss.scope.as_ref().unwrap().name, "callnext");
            let spans: &[Span] = &ss.spans;
            assert_eq!(spans.len(), 3 * texts.len(), "{encoding:?}");
            for (span, want) in spans.iter().zip(wanted) {
                let (
                    trace,
                    id,
                    parent,
                    state,
                    name,
                    kind,
                    end,
                    attributes,
                    events,
                    error,
                    event_attrs,
                ) = want;
                assert_eq!(span.trace_id, trace.to_be_bytes(), "{encoding:?}");
                assert_eq!(span.span_id, id.to_be_bytes());
                if parent == 0 {
                    assert!(span.parent_span_id.is_empty());
                } else {
                    assert_eq!(span.parent_span_id, parent.to_be_bytes());
                }
                assert_eq!(span.trace_state, state);
                assert_eq!(span.name, name);
                assert_eq!(span.kind, i32::from(kind));
                assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
                assert_eq!(span.end_time_unix_nano, end);
                assert_eq!(attrs(&span.attributes), attributes);
                assert_eq!(span.events.len(), events);
                for (k, event) in span.events.iter().enumerate() {
                    assert_eq!(event.time_unix_nano, 1_700_000_000_000_000_000 + k as u64);
                    assert_eq!(attrs(&event.attributes), event_attrs);
                }
                match error {
                    Some(message) => {
                        let status = span.status.as_ref().unwrap();
                        assert_eq!((status.code, status.message.as_str()), (2, &*message));
                    }
                    None => assert!(span.status.is_none()),
                }
            }
        }
    }
}
