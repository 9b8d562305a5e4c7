//! The access log as a hook: a record begun with the request, finished with what the client
//! got (its own observer of the response), and request bodies of unknown length counted.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A request's record until its response has been sent; logged as 499 if dropped before.
#[derive(Debug)]
pub struct Pending {
    record: Record,
    /// Whether the record was written.
    done: bool,
    /// When the request began, in the instrumentation's clock ticks (a TSC read where there is
    /// one: cheaper than `Instant::now` and its subtraction, twice a request).
    started: u64,
    shared: Arc<Shared>,
    bytes_in: Option<Arc<AtomicU64>>,
    /// The observer of the response registered after this one.
    next: crate::battery::Chain,
}

impl Pending {
    /// Writes the record: `status` is `None` when the client went away first (logged as 499).
    fn finish(&mut self, status: Option<u16>, bytes_out: u64) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let record = &mut self.record;
        record.status = status.unwrap_or(499);
        record.bytes_out = bytes_out;
        record.duration_us = elapsed_us(self.started);
        if let Some(counted) = &self.bytes_in {
            record.bytes_in = counted.load(Ordering::Relaxed);
        }
        let shared = &self.shared;
        let write = |line: &mut String| {
            record.write_line(line, shared.format, &shared.redact);
            match shared.on_full {
                OnFull::Drop => shared.queue.push(line),
                OnFull::Block => shared.queue.push_admitted(line),
            }
        };
        // The line is put together in a buffer this thread keeps (not a string allocated and
        // freed per request); the queue copies it.
        let reused = LINE.try_with(|buffer| {
            let Ok(mut line) = buffer.try_borrow_mut() else {
                return false;
            };
            line.clear();
            write(&mut line);
            if line.capacity() > MAX_KEPT_LINE {
                *line = String::with_capacity(LINE_CAPACITY);
            }
            true
        });
        if reused != Ok(true) {
            write(&mut String::with_capacity(LINE_CAPACITY));
        }
    }
}

/// A line's usual room; a longer one grows the buffer, which is kept up to [`MAX_KEPT_LINE`].
const LINE_CAPACITY: usize = 512;
const MAX_KEPT_LINE: usize = 16 * 1024;

thread_local! {
    static LINE: std::cell::RefCell<String> =
        std::cell::RefCell::new(String::with_capacity(LINE_CAPACITY));
}

/// Microseconds since `started` (clock ticks), rounded.
fn elapsed_us(started: u64) -> u64 {
    let ticks = crate::clock::ticks::now().saturating_sub(started);
    crate::clock::ticks::ticks_to_ns(ticks).saturating_add(500) / 1000
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Dropped before its response was sent: the client went away.
        self.finish(None, 0);
    }
}

/// The record, boxed once when the request begins, is its own observer of the response.
impl crate::battery::Observe for Pending {
    fn delivered(mut self: Box<Self>, delivered: &crate::battery::Delivered) {
        let status = delivered.complete().then(|| delivered.status().as_u16());
        self.finish(status, delivered.bytes());
    }

    fn next(&mut self) -> &mut crate::battery::Chain {
        &mut self.next
    }
}

impl Hook for AccessLog {
    type State = Option<Box<Pending>>;

    fn capabilities(&self) -> crate::battery::Capabilities {
        let handle = self.handle();
        crate::battery::Capabilities::new()
            .kind("access_log")
            .logs()
            .flush(move |timeout| handle.flush(timeout))
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Option<Box<Pending>>> {
        let shared = &self.shared;
        if shared.exclude.matches(req.uri().path()) {
            return Flow::Continue(None);
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bytes_in = if declared.is_none() && !http_body::Body::is_end_stream(req.body()) {
            let counted = Arc::new(AtomicU64::new(0));
            let body = std::mem::take(req.body_mut());
            *req.body_mut() = Body::new(CountIn {
                body,
                counted: Arc::clone(&counted),
            });
            Some(counted)
        } else {
            None
        };
        let header = |name| req.headers().get(name).cloned();
        // Built in its box's place (one copy of the record, not two).
        let pending = Box::new(Pending {
            record: Record {
                client_ip: ClientIp::of(req).map(|ip| ip.0),
                method: req.method().clone(),
                route: None,
                uri: req.uri().clone(),
                redact: !shared.redact.is_empty(),
                protocol: record::protocol(req.version()),
                status: 0,
                bytes_in: declared.unwrap_or(0),
                bytes_out: 0,
                ttfb_us: None,
                duration_us: 0,
                request_id: RequestId::of(req).map(|id| id.header_value().clone()),
                user_agent: header(header::USER_AGENT),
                referer: header(header::REFERER),
                answered_by: None,
                user: None,
                #[cfg(feature = "otel")]
                trace_id: req
                    .extensions()
                    .get::<crate::telemetry::TraceContext>()
                    .map(|t| t.trace_id().into()),
                #[cfg(not(feature = "otel"))]
                trace_id: None,
                at: crate::clock::wall(),
            },
            done: false,
            started: crate::clock::ticks::now(),
            shared: Arc::clone(shared),
            bytes_in,
            next: crate::battery::Chain::default(),
        });
        if shared.on_full == OnFull::Block && !shared.queue.has_room() {
            return Flow::wait(async move {
                pending.shared.queue.room().await;
                Ok::<_, std::convert::Infallible>(Some(pending))
            });
        }
        Flow::Continue(Some(pending))
    }

    fn on_response<'a>(&'a self, pending: Option<Box<Pending>>, res: &'a mut Response) -> Flow<'a> {
        let Some(mut pending) = pending else {
            return Flow::Continue(());
        };
        let record = &mut pending.record;
        record.ttfb_us = Some(elapsed_us(pending.started));
        record.route = res.extensions().get::<MatchedPath>().cloned();
        record.answered_by = res.extensions().get::<AnsweredBy>().cloned();
        record.user = res.extensions().get::<crate::UserId>().cloned();
        // Written once the client has been sent the body (or went away), with the status and
        // bytes it got, whatever the batteries outside this one do to the response.
        crate::battery::observe_boxed(res, pending);
        Flow::Continue(())
    }
}

pin_project_lite::pin_project! {
    /// A request body of unknown length, counted as it is read.
    struct CountIn {
        #[pin]
        body: Body,
        counted: Arc<AtomicU64>,
    }
}

impl http_body::Body for CountIn {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counted.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
