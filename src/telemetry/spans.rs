//! A finished request's spans: encoded in a thread's scratch buffers and queued for the
//! exporter.

#[allow(clippy::wildcard_imports)]
use super::*;

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
            crate::clock::ticks::now()
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
