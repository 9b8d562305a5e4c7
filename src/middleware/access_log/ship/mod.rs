//! The access log's HTTP sink: lines batched by count, bytes and time, gzipped, POSTed as JSON
//! lines (Vector's HTTP source, any NDJSON receiver) or as a Loki push, retried with
//! exponential backoff and jitter. It runs on the writer thread (its own single-threaded tokio
//! runtime drives the client), so requests never wait on it: while it retries, the queue in
//! front fills and then drops, counted.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::Full;

use crate::http_client::{FetchError, HttpClient};
use crate::ConfigError;

mod sink;

pub use self::sink::HttpSink;

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
    /// Records the receiver did not get since the start: given up on, or kept only in the
    /// fallback file.
    pub(super) missed: u64,
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
                self.missed += count as u64;
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
                let now = crate::clock::wall_ns();
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
                    out.push_str(&format!("[\"{}\",", now + i as u64));
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
