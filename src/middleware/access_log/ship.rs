//! The access log's HTTP sink: lines batched by count, bytes and time, gzipped, POSTed as JSON
//! lines (Vector's HTTP source, any NDJSON receiver) or as a Loki push, retried with
//! exponential backoff and jitter. It runs on the writer thread (its own single-threaded tokio
//! runtime drives the client), so requests never wait on it: while it retries, the queue in
//! front fills and then drops, counted.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::Full;

use crate::http_client::{FetchError, HttpClient};
use crate::ConfigError;

/// What the receiver expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Shipping {
    /// One record per line (`application/x-ndjson`): Vector's `http_server` source, Fluent
    /// Bit's `http` input, most log pipelines.
    #[default]
    JsonLines,
    /// Loki's push API in JSON (`/loki/api/v1/push`): one stream with the configured labels,
    /// each record a value stamped with the time it was sent (nanoseconds, in order).
    Loki,
}

/// Where and how an access log's records are sent over HTTP; given to
/// [`Sink::Http`](super::Sink::Http) and checked when the log is built.
///
/// ```
/// use std::time::Duration;
/// use callnext::middleware::access_log::{AccessLog, HttpSink, Shipping, Sink};
///
/// let sink = HttpSink::new("http://127.0.0.1:3100/loki/api/v1/push")
///     .shipping(Shipping::Loki)
///     .label("job", "orders")
///     .header("authorization", "Bearer s3cret")
///     .batch(500, 512 * 1024, Duration::from_millis(500));
/// let log = AccessLog::builder().sink(Sink::Http(sink)).build().unwrap();
/// # log.handle().close();
/// ```
#[derive(Clone)]
#[must_use]
pub struct HttpSink {
    url: String,
    shipping: Shipping,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    labels: Vec<(String, String)>,
    /// Whether `labels` is still the default.
    default_labels: bool,
    batch_records: usize,
    batch_bytes: usize,
    batch_wait: Duration,
    gzip: bool,
    retries: u32,
    timeout: Duration,
    fallback: Option<PathBuf>,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials (`authorization`, an API key): names only.
        f.debug_struct("HttpSink")
            .field("url", &crate::redact::redact_urls(&self.url))
            .field("shipping", &self.shipping)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    /// Records POSTed to `url` (HTTP or HTTPS) as JSON lines, gzipped, in batches of at most
    /// 1,000 records or 1 MiB, sent at least every second; a failed batch is tried 5 more
    /// times (backoff from 250 ms to 8 s, with jitter), each attempt given 10 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            shipping: Shipping::JsonLines,
            headers: Vec::new(),
            content_type: None,
            labels: vec![("job".to_owned(), "callnext".to_owned())],
            default_labels: true,
            batch_records: 1000,
            batch_bytes: 1 << 20,
            batch_wait: Duration::from_secs(1),
            gzip: true,
            retries: 5,
            timeout: Duration::from_secs(10),
            fallback: None,
        }
    }

    /// What the receiver expects. Defaults to [`Shipping::JsonLines`].
    pub fn shipping(mut self, shipping: Shipping) -> Self {
        self.shipping = shipping;
        self
    }

    /// A header sent with every batch (`authorization`, `x-scope-orgid`, ...).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `Content-Type` of JSON lines. Defaults to `application/x-ndjson`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// A label of the Loki stream (replacing the default `job="callnext"` on first use).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if std::mem::take(&mut self.default_labels) {
            self.labels.clear();
        }
        self.labels.push((name.into(), value.into()));
        self
    }

    /// A batch is sent when it holds `records` records or `bytes` bytes, or `wait` after its
    /// first record.
    pub fn batch(mut self, records: usize, bytes: usize, wait: Duration) -> Self {
        self.batch_records = records;
        self.batch_bytes = bytes;
        self.batch_wait = wait;
        self
    }

    /// Whether batches are gzipped (`Content-Encoding: gzip`). Defaults to yes.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// How many times a failed batch is tried again (connection errors, timeouts, 429 and 5xx;
    /// other answers are not retried). Defaults to 5.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The deadline of one attempt. Defaults to 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A file that receives the records that could not be sent (instead of dropping them).
    pub fn fallback_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.fallback = Some(path.into());
        self
    }

    pub(super) fn start(&self) -> Result<Shipper, ConfigError> {
        let uri = crate::http_client::http_url("url", &self.url)?;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    "headers",
                    format!("`{}` is not a header name", crate::Printable::new(name)),
                )
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                ConfigError::invalid(
                    "headers",
                    format!("the value of `{name}` is not a header value"),
                )
            })?;
            headers.push((name, value));
        }
        let content_type = match (self.shipping, &self.content_type) {
            (Shipping::Loki, _) => HeaderValue::from_static("application/json"),
            (Shipping::JsonLines, None) => HeaderValue::from_static("application/x-ndjson"),
            (Shipping::JsonLines, Some(ct)) => HeaderValue::from_str(ct)
                .map_err(|_| ConfigError::invalid("content_type", "not a header value"))?,
        };
        if self.batch_records == 0 || self.batch_bytes == 0 || self.batch_wait.is_zero() {
            return Err(ConfigError::invalid(
                "batch",
                "a batch needs at least 1 record, 1 byte and a wait above zero",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "send_timeout",
                "must be greater than zero",
            ));
        }
        if self.shipping == Shipping::Loki && self.labels.is_empty() {
            return Err(ConfigError::invalid(
                "labels",
                "a Loki stream needs at least one label",
            ));
        }
        let fallback = match &self.fallback {
            None => None,
            Some(path) => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|err| {
                        ConfigError::invalid(
                            "path",
                            format!("cannot open {}: {err}", path.display()),
                        )
                    })?,
            ) as Box<dyn Write + Send>),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| {
                ConfigError::invalid("sink", format!("cannot start the HTTP sink: {err}"))
            })?;
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>();
        Ok(Shipper {
            uri,
            shipping: self.shipping,
            headers,
            content_type,
            labels: serde_json::Value::Object(labels).to_string(),
            batch_records: self.batch_records,
            batch_bytes: self.batch_bytes,
            batch_wait: self.batch_wait,
            gzip: self.gzip,
            retries: self.retries,
            timeout: self.timeout,
            fallback,
            client: HttpClient::new(self.timeout),
            runtime,
            buf: Vec::new(),
            lines: 0,
            since: None,
            unsent: 0,
        })
    }
}

/// The sink at work, owned by the writer thread.
pub(super) struct Shipper {
    uri: http::Uri,
    shipping: Shipping,
    headers: Vec<(HeaderName, HeaderValue)>,
    content_type: HeaderValue,
    /// The Loki stream's labels, as JSON.
    labels: String,
    batch_records: usize,
    batch_bytes: usize,
    batch_wait: Duration,
    gzip: bool,
    retries: u32,
    timeout: Duration,
    fallback: Option<Box<dyn Write + Send>>,
    client: HttpClient,
    runtime: tokio::runtime::Runtime,
    /// Lines not yet sent, each ending in `\n`.
    buf: Vec<u8>,
    lines: usize,
    /// When the oldest unsent line arrived.
    since: Option<Instant>,
    /// Records given up on since the start.
    pub(super) unsent: u64,
}

/// Why an attempt failed, and whether another may succeed.
struct Failed {
    error: String,
    retry: bool,
}

impl Shipper {
    /// How long the writer may sleep before a batch is due.
    pub(super) fn due_in(&self) -> Option<Duration> {
        self.since
            .map(|since| self.batch_wait.saturating_sub(since.elapsed()))
    }

    /// Takes `lines` lines (each ending in `\n`); sends full batches now.
    pub(super) fn add(
        &mut self,
        bytes: &[u8],
        lines: usize,
        written: &AtomicU64,
        dropped: &Dropped<'_>,
    ) {
        if lines == 0 {
            return;
        }
        self.buf.extend_from_slice(bytes);
        self.lines += lines;
        self.since.get_or_insert_with(Instant::now);
        while self.lines >= self.batch_records || self.buf.len() >= self.batch_bytes {
            self.send_one(None, written, dropped);
        }
    }

    /// Sends what is due: everything when `all` (a flush or the end), before `deadline`;
    /// otherwise the batch whose wait is over.
    pub(super) fn send_due(
        &mut self,
        all: bool,
        deadline: Option<Instant>,
        written: &AtomicU64,
        dropped: &Dropped<'_>,
    ) {
        if all {
            while self.lines > 0 {
                self.send_one(deadline, written, dropped);
            }
        } else if self.due_in() == Some(Duration::ZERO) {
            self.send_one(deadline, written, dropped);
        }
    }

    /// Sends the first batch of the buffer (at most `batch_records` records and about
    /// `batch_bytes` bytes: a longer single record goes alone), led by a `{"dropped":N}` line
    /// when records were lost since the last batch that arrived.
    fn send_one(&mut self, deadline: Option<Instant>, written: &AtomicU64, dropped: &Dropped<'_>) {
        let (end, count) = self.cut();
        if count == 0 {
            return;
        }
        let lost = dropped.0.swap(0, Ordering::Relaxed);
        let note = (lost > 0).then(|| format!("{{\"dropped\":{lost}}}\n"));
        let result = self.send(note.as_deref().unwrap_or(""), &self.buf[..end], deadline);
        match result {
            Ok(()) => {
                written.fetch_add(count as u64, Ordering::Relaxed);
            }
            Err(failed) => {
                let kept = match &mut self.fallback {
                    Some(file) => file
                        .write_all(&self.buf[..end])
                        .and_then(|()| file.flush())
                        .is_ok(),
                    None => false,
                };
                tracing::warn!(
                    url = %crate::redact::redact_urls(&self.uri.to_string()),
                    records = count,
                    error = %failed.error,
                    fallback = kept,
                    "access log: records could not be sent"
                );
                // The note goes with the next batch, counting these too.
                dropped.0.fetch_add(lost, Ordering::Relaxed);
                if !kept {
                    self.unsent += count as u64;
                    dropped.add(count as u64);
                }
            }
        }
        self.buf.drain(..end);
        self.lines -= count;
        self.since = (self.lines > 0).then(Instant::now);
    }

    /// The end (in bytes) and line count of the first batch.
    fn cut(&self) -> (usize, usize) {
        let mut end = 0;
        let mut count = 0;
        for (i, &b) in self.buf.iter().enumerate() {
            if b != b'\n' {
                continue;
            }
            if count > 0 && i + 1 > self.batch_bytes {
                break;
            }
            end = i + 1;
            count += 1;
            if count == self.batch_records || end >= self.batch_bytes {
                break;
            }
        }
        (end, count)
    }

    /// One batch, with its retries, within `deadline` if there is one.
    fn send(&self, note: &str, lines: &[u8], deadline: Option<Instant>) -> Result<(), Failed> {
        let body = self.body(note.as_bytes(), lines).map_err(|error| Failed {
            error,
            retry: false,
        })?;
        let mut attempt = 0;
        loop {
            let mut timeout = self.timeout;
            if let Some(deadline) = deadline {
                timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
                if timeout.is_zero() {
                    return Err(Failed {
                        error: "no time left to send".to_owned(),
                        retry: false,
                    });
                }
            }
            let failed = match self.post(body.clone(), timeout) {
                Ok(()) => return Ok(()),
                Err(failed) => failed,
            };
            if !failed.retry || attempt >= self.retries {
                return Err(failed);
            }
            let pause = backoff(attempt);
            if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                return Err(failed);
            }
            tracing::debug!(url = %crate::redact::redact_urls(&self.uri.to_string()), error = %failed.error, retry_in_ms = pause.as_millis() as u64, "access log: sending failed; retrying");
            std::thread::sleep(pause);
            attempt += 1;
        }
    }

    fn post(&self, body: Bytes, timeout: Duration) -> Result<(), Failed> {
        let mut req = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, self.content_type.clone());
        if self.gzip {
            req = req.header(http::header::CONTENT_ENCODING, "gzip");
        }
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(body)).map_err(|e| Failed {
            error: e.to_string(),
            retry: false,
        })?;
        let res = self
            .runtime
            .block_on(self.client.send(req, timeout, 64 * 1024))
            .map_err(|e| Failed {
                retry: !matches!(e, FetchError::TooLarge(_)),
                error: e.to_string(),
            })?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        Err(Failed {
            error: format!("the receiver answered {status}"),
            retry: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
        })
    }

    /// The request body of a batch: the lines as they are, or a Loki push; gzipped if asked.
    fn body(&self, note: &[u8], lines: &[u8]) -> Result<Bytes, String> {
        let raw = match self.shipping {
            Shipping::JsonLines => [note, lines].concat(),
            Shipping::Loki => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let mut out = String::with_capacity(lines.len() + lines.len() / 4 + 64);
                out.push_str("{\"streams\":[{\"stream\":");
                out.push_str(&self.labels);
                out.push_str(",\"values\":[");
                let text = String::from_utf8_lossy(lines);
                let note = String::from_utf8_lossy(note);
                for (i, line) in note.lines().chain(text.lines()).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    // Stamped in order, a nanosecond apart: Loki wants a stream's entries
                    // ordered.
                    out.push_str(&format!("[\"{}\",", now + i as u128));
                    out.push_str(&serde_json::Value::String(line.to_owned()).to_string());
                    out.push(']');
                }
                out.push_str("]}]}");
                out.into_bytes()
            }
        };
        if !self.gzip {
            return Ok(raw.into());
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&raw).map_err(|e| e.to_string())?;
        gz.finish().map(Bytes::from).map_err(|e| e.to_string())
    }
}

/// The pause before retry `attempt` (0-based): 250 ms doubling to at most 8 s, times a random
/// factor in [0.5, 1) so that instances do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1 << attempt.min(5));
    let base = base.min(Duration::from_secs(8));
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    base.mul_f64(0.5 + f64::from(random) / 2000.0)
}

/// Counts records the sink gave up on with the queue's drops.
pub(super) struct Dropped<'a>(pub(super) &'a AtomicU64, pub(super) &'a AtomicU64);

impl Dropped<'_> {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
        self.1.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_shows_no_credential() {
        let sink = super::HttpSink::new("https://u:pw1@logs.example/in?api_key=k2")
            .header("authorization", "Bearer t3");
        let shown = format!("{sink:?}");
        for secret in ["pw1", "k2", "t3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("authorization"), "{shown}");
    }
}
