//! The OTLP/HTTP exporter: spans encoded once, at the end of their request, as OTLP protobuf
//! (or JSON) `Span` messages, queued in one buffer, and sent in batches from a thread of its
//! own inside an `ExportTraceServiceRequest`.
//!
//! Written by hand rather than on the OpenTelemetry SDK and its OTLP exporter: measured with
//! bench/sinks.sh, the SDK cost about 1.5 µs to make a span and 4.6 µs to export one (its span
//! record, the conversion to the OTLP message, prost, the post), which put traces of every
//! request at 2.2× the CPU of the server without them; the target is 1.15×.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use crate::http_client::HttpClient;
use crate::ConfigError;

/// Spans waiting, at most; more are dropped (counted).
const MAX_QUEUED: usize = 8192;
/// A batch is sent at this many spans, or every second.
const BATCH: usize = 1024;
const TICK: Duration = Duration::from_secs(1);

/// An attribute value.
pub(crate) enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
}

/// A span to encode.
pub(crate) struct SpanOut<'a> {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) parent_id: u64,
    pub(crate) trace_state: &'a str,
    pub(crate) name: &'a str,
    /// 1 internal, 2 server.
    pub(crate) kind: u64,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) attributes: &'a [(&'a str, Value<'a>)],
    pub(crate) events: &'a [EventOut<'a>],
    /// An error status with this message.
    pub(crate) error: Option<&'a str>,
}

pub(crate) struct EventOut<'a> {
    pub(crate) name: &'a str,
    pub(crate) time_ns: u64,
    pub(crate) attributes: Vec<(&'a str, Value<'a>)>,
}

/// How spans are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

// Protobuf, by hand: tags, varints, length-delimited fields.

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A nested message: written to `scratch`, then copied behind its length.
fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::with_capacity(64);
    write(&mut inner);
    bytes_field(out, field, &inner);
}

/// Bytes of `v` as a varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes of a length-delimited field of `len` bytes (every field here has a one-byte tag).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn any_len(value: &Value<'_>) -> usize {
    match value {
        Value::Str(s) => field_len(s.len()),
        Value::Int(i) => 1 + varint_len(*i as u64),
        Value::Double(_) => 9,
    }
}

fn key_value_len(key: &str, value: &Value<'_>) -> usize {
    field_len(key.len()) + field_len(any_len(value))
}

/// A `KeyValue` as field `field`. Lengths are computed rather than measured on a scratch
/// buffer: no allocation per attribute.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Value<'_>) {
    tag(out, field, 2);
    varint(out, key_value_len(key, value) as u64);
    bytes_field(out, 1, key.as_bytes());
    tag(out, 2, 2);
    varint(out, any_len(value) as u64);
    match value {
        Value::Str(s) => bytes_field(out, 1, s.as_bytes()),
        Value::Int(i) => {
            tag(out, 3, 0);
            varint(out, *i as u64);
        }
        Value::Double(d) => fixed64(out, 4, d.to_bits()),
    }
}

fn event_len(e: &EventOut<'_>) -> usize {
    9 + field_len(e.name.len())
        + e.attributes
            .iter()
            .map(|(k, v)| field_len(key_value_len(k, v)))
            .sum::<usize>()
}

fn status_len(message: &str) -> usize {
    field_len(message.len()) + 2
}

fn span_len(span: &SpanOut<'_>) -> usize {
    let mut len = field_len(16) + field_len(8) + field_len(span.name.len());
    if !span.trace_state.is_empty() {
        len += field_len(span.trace_state.len());
    }
    if span.parent_id != 0 {
        len += field_len(8);
    }
    len += 1 + varint_len(span.kind) + 9 + 9;
    len += span
        .attributes
        .iter()
        .map(|(k, v)| field_len(key_value_len(k, v)))
        .sum::<usize>();
    len += span
        .events
        .iter()
        .map(|e| field_len(event_len(e)))
        .sum::<usize>();
    if let Some(message) = span.error {
        len += field_len(status_len(message));
    }
    len
}

/// One `Span` message, as the element of `ScopeSpans.spans` (field 2, with its tag and
/// length), appended to `out`.
pub(crate) fn encode_span(out: &mut Vec<u8>, span: &SpanOut<'_>, encoding: Encoding) {
    match encoding {
        Encoding::Protobuf => {
            let len = span_len(span);
            out.reserve(len + 6);
            tag(out, 2, 2);
            varint(out, len as u64);
            bytes_field(out, 1, &span.trace_id.to_be_bytes());
            bytes_field(out, 2, &span.span_id.to_be_bytes());
            if !span.trace_state.is_empty() {
                bytes_field(out, 3, span.trace_state.as_bytes());
            }
            if span.parent_id != 0 {
                bytes_field(out, 4, &span.parent_id.to_be_bytes());
            }
            bytes_field(out, 5, span.name.as_bytes());
            tag(out, 6, 0);
            varint(out, span.kind);
            fixed64(out, 7, span.start_ns);
            fixed64(out, 8, span.end_ns);
            for (k, v) in span.attributes {
                key_value(out, 9, k, v);
            }
            for e in span.events {
                tag(out, 11, 2);
                varint(out, event_len(e) as u64);
                fixed64(out, 1, e.time_ns);
                bytes_field(out, 2, e.name.as_bytes());
                for (k, v) in &e.attributes {
                    key_value(out, 3, k, v);
                }
            }
            if let Some(message) = span.error {
                tag(out, 15, 2);
                varint(out, status_len(message) as u64);
                bytes_field(out, 2, message.as_bytes());
                tag(out, 3, 0);
                varint(out, 2);
            }
        }
        Encoding::Json => {
            let mut j = String::with_capacity(512);
            if !out.is_empty() {
                j.push(',');
            }
            let _ = write!(
                j,
                "{{\"traceId\":\"{:032x}\",\"spanId\":\"{:016x}\"",
                span.trace_id, span.span_id
            );
            if !span.trace_state.is_empty() {
                j.push_str(",\"traceState\":");
                json_string(&mut j, span.trace_state);
            }
            if span.parent_id != 0 {
                let _ = write!(j, ",\"parentSpanId\":\"{:016x}\"", span.parent_id);
            }
            j.push_str(",\"name\":");
            json_string(&mut j, span.name);
            let _ = write!(
                j,
                ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":",
                span.kind, span.start_ns, span.end_ns
            );
            json_attributes(&mut j, span.attributes);
            j.push_str(",\"events\":[");
            for (i, e) in span.events.iter().enumerate() {
                if i > 0 {
                    j.push(',');
                }
                let _ = write!(j, "{{\"timeUnixNano\":\"{}\",\"name\":", e.time_ns);
                json_string(&mut j, e.name);
                j.push_str(",\"attributes\":");
                json_attributes(&mut j, &e.attributes);
                j.push('}');
            }
            j.push(']');
            if let Some(msg) = span.error {
                j.push_str(",\"status\":{\"code\":2,\"message\":");
                json_string(&mut j, msg);
                j.push('}');
            }
            j.push('}');
            out.extend_from_slice(j.as_bytes());
        }
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
}

fn json_attributes(out: &mut String, attrs: &[(&str, Value<'_>)]) {
    out.push('[');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"key\":");
        json_string(out, k);
        out.push_str(",\"value\":{");
        match v {
            Value::Str(s) => {
                out.push_str("\"stringValue\":");
                json_string(out, s);
            }
            Value::Int(n) => {
                let _ = write!(out, "\"intValue\":\"{n}\"");
            }
            Value::Double(d) => {
                let _ = write!(out, "\"doubleValue\":{d}");
            }
        }
        out.push_str("}}");
    }
    out.push(']');
}

/// The request around a batch of encoded spans.
fn envelope(spans: &[u8], service: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => {
            let mut out = Vec::with_capacity(spans.len() + 128);
            message(&mut out, 1, |rs| {
                message(rs, 1, |resource| {
                    key_value(resource, 1, "service.name", &Value::Str(service));
                });
                message(rs, 2, |ss| {
                    message(ss, 1, |scope| bytes_field(scope, 1, b"callnext"));
                    ss.extend_from_slice(spans);
                });
            });
            out
        }
        Encoding::Json => {
            let mut out = String::with_capacity(spans.len() + 200);
            out.push_str("{\"resourceSpans\":[{\"resource\":{\"attributes\":");
            json_attributes(&mut out, &[("service.name", Value::Str(service))]);
            out.push_str("},\"scopeSpans\":[{\"scope\":{\"name\":\"callnext\"},\"spans\":[");
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(spans);
            bytes.extend_from_slice(b"]}]}]}");
            bytes
        }
    }
}

/// Spans waiting for the exporter thread.
#[derive(Default)]
struct Pending {
    /// Encoded spans, back to back (protobuf: each with its tag and length; JSON: separated by
    /// commas).
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
        if pending.stop || pending.spans + spans > MAX_QUEUED {
            drop(pending);
            self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
            return;
        }
        if self.encoding == Encoding::Json
            && !pending.bytes.is_empty()
            && !encoded.starts_with(b",")
        {
            pending.bytes.push(b',');
        }
        pending.bytes.extend_from_slice(encoded);
        pending.spans += spans;
        let wake = pending.spans >= BATCH;
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
        let mut batch = Vec::new();
        loop {
            let (spans, flushes, stop) = {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                if pending.spans < BATCH && pending.flushes.is_empty() && !pending.stop {
                    pending = self
                        .wake
                        .wait_timeout(pending, TICK)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                std::mem::swap(&mut batch, &mut pending.bytes);
                (
                    std::mem::take(&mut pending.spans),
                    std::mem::take(&mut pending.flushes),
                    pending.stop,
                )
            };
            if spans > 0 {
                let body = envelope(&batch, &target.service, self.encoding);
                batch.clear();
                match runtime.block_on(self.send(&client, target, body)) {
                    Ok(()) => {
                        self.sent.fetch_add(spans as u64, Ordering::Relaxed);
                    }
                    Err(err) => {
                        self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
                        tracing::warn!(url = %target.uri, spans, error = %err, "traces could not be exported");
                    }
                }
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
    async fn send(
        &self,
        client: &HttpClient,
        target: &Target,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let body = Bytes::from(body);
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
