//! The encoder checked against the OTLP messages as prost decodes them.
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
            let (trace, id, parent, state, name, kind, end, attributes, events, error, event_attrs) =
                want;
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
