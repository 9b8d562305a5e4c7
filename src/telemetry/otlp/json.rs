//! OTLP/JSON: spans and events as the JSON encoding of the same messages.

#[allow(clippy::wildcard_imports)]
use super::*;

#[inline(never)]
pub(super) fn json_event(out: &mut Vec<u8>, event: &EventOut<'_>) {
    if !out.is_empty() {
        out.push(b',');
    }
    let _ = write!(out, "{{\"timeUnixNano\":\"{}\",\"name\":", event.time_ns);
    json_string(out, event.name);
    out.extend_from_slice(b",\"attributes\":");
    json_attributes(out, event.attributes);
    out.push(b'}');
}

#[inline(never)]
pub(super) fn json_span(out: &mut Vec<u8>, span: &SpanOut<'_>) {
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

pub(super) fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

pub(super) fn json_attributes(out: &mut Vec<u8>, attrs: &[Attr<'_>]) {
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
