//! The exporter: spans queued in one buffer, sent in batches from a thread of its own inside
//! an `ExportTraceServiceRequest`, retried, dropped (counted) when the queue is full.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What surrounds a batch of spans in an `ExportTraceServiceRequest`: the resource and the
/// scope before them (and, in JSON, the closing brackets after). A batch starts with room for
/// the part before, filled in once the batch's length is known, so the spans queued are sent
/// without being copied.
pub(super) struct Envelope {
    encoding: Encoding,
    /// Protobuf: `ResourceSpans.resource` and `ScopeSpans.scope` as fields. JSON: the text
    /// before the first span, and nothing.
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Envelope {
    pub(super) fn new(service: &str, encoding: Encoding) -> Self {
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
    pub(super) fn room(&self) -> usize {
        match self.encoding {
            // Two tags and two lengths of at most 10 bytes around the resource and the scope.
            Encoding::Protobuf => 22 + self.resource.len() + self.scope.len(),
            Encoding::Json => self.resource.len(),
        }
    }

    /// Starts a batch in `out` (empty).
    pub(super) fn start(&self, out: &mut Vec<u8>) {
        match self.encoding {
            Encoding::Protobuf => out.resize(self.room(), 0),
            Encoding::Json => out.extend_from_slice(&self.resource),
        }
    }

    /// The request's body: the batch completed in place.
    pub(super) fn finish(&self, mut batch: Vec<u8>) -> Bytes {
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
