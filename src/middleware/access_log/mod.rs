//! [`AccessLog`]: one record per request, written when its response body has been sent (or
//! dropped: a client gone before the end is logged with status 499, nginx's convention).
//!
//! A record holds the time (RFC 3339, UTC), the [`ClientIp`], method, route template, path,
//! query (with secret parameters redacted), protocol, status, bytes in and out, time to the
//! response head and in all (ms), the [`RequestId`], user agent, referer, the entry that
//! answered when one answered early ([`AnsweredBy`]), and the user (the subject
//! [`Auth`](crate::middleware::Auth) found, inside it; the remote user of `combined` and
//! `common`). Formats: JSON lines (default),
//! `combined` and `common`. A writer thread behind a bounded queue does the I/O, so requests
//! never wait on it; records that do not fit are dropped, counted, and noted in the log as
//! `{"dropped":N}` once the queue drains. [`AccessLogHandle::flush`] at shutdown writes what
//! is queued.
//!
//! Sinks: stdout, a file (rotated by time or size), a writer of the application's, or, with
//! the feature `log-shipping`, an HTTP receiver ([`Sink::Http`] with an `HttpSink`): batches
//! of JSON lines (Vector, Fluent Bit) or Loki pushes, gzipped, retried with backoff; a
//! receiver that is down costs drops, counted and noted in the next batch, never request
//! time.
//!
//! ```
//! use callnext::middleware::{AccessLog, SetRequestId};
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = std::env::temp_dir().join(format!("callnext-doc-log-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("access.log");
//! let log = AccessLog::builder().file(&path).build().unwrap();
//! let handle = log.handle();
//! let app = Router::new().route("/items/{id}", get(|| async { "item" }));
//! let client = TestClient::new(Stack::new().hook(SetRequestId::new()).hook(log).service(app));
//! client.get("/items/7?token=secret").header("x-request-id", "r-1").await;
//!
//! handle.flush(std::time::Duration::from_secs(5));
//! let line = std::fs::read_to_string(&path).unwrap();
//! let record: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
//! assert_eq!(record["route"], "/items/{id}");
//! assert_eq!(record["query"], "token=REDACTED");
//! assert_eq!(record["status"], 200);
//! assert_eq!(record["request_id"], "r-1");
//! assert_eq!(record["bytes_out"], 4);
//! std::fs::remove_dir_all(&dir).unwrap();
//! # });
//! ```
//!
//! In nginx's `combined` format on standard output, health checks left out:
//!
//! ```
//! use callnext::middleware::access_log::{AccessLog, Format};
//!
//! let log = AccessLog::builder()
//!     .format(Format::Combined)
//!     .exclude_paths(["/health/live", "/health/ready"])
//!     .queue(10_000)
//!     .build()
//!     .unwrap();
//! # let _ = log;
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

mod hook;
mod record;
#[cfg(feature = "log-shipping")]
mod ship;
mod sink;
mod writer;

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::MatchedPath;
use bytes::Bytes;
use http::header;

pub use hook::Pending;
pub use record::Format;
use record::Record;
#[cfg(feature = "log-shipping")]
pub use ship::{HttpSink, Shipping};
pub use sink::{OnFull, Rotate, SharedWriter, Sink};
use writer::Queue;

use crate::RequestId;
use crate::{AnsweredBy, ClientIp, ConfigError, Flow, Hook, Request, Response};

/// Query parameters whose values are never logged, unless configured otherwise.
const REDACTED_BY_DEFAULT: [&str; 13] = [
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "code_verifier",
    "sessionid",
];

/// The settings of an [`AccessLog`], checked by [`AccessLogBuilder::build`].
#[derive(Debug, Clone)]
#[must_use]
pub struct AccessLogBuilder {
    format: Format,
    sink: Sink,
    queue: usize,
    on_full: OnFull,
    exclude: Vec<String>,
    redact: Vec<String>,
}

impl Default for AccessLogBuilder {
    fn default() -> Self {
        Self {
            format: Format::Json,
            sink: Sink::Stdout,
            queue: 65_536,
            on_full: OnFull::Drop,
            exclude: Vec::new(),
            redact: REDACTED_BY_DEFAULT
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

impl AccessLogBuilder {
    /// The line format. Defaults to JSON.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Write to this file (created if needed, appended to), never rotated.
    pub fn file(self, path: impl AsRef<Path>) -> Self {
        self.sink(Sink::File {
            path: path.as_ref().to_owned(),
            rotate: Rotate::Never,
            max_files: 7,
        })
    }

    /// Where the records go. Defaults to standard output.
    pub fn sink(mut self, sink: Sink) -> Self {
        self.sink = sink;
        self
    }

    /// How many records may wait for the writer; more are dropped (counted). Defaults to
    /// 65,536.
    pub fn queue(mut self, records: usize) -> Self {
        self.queue = records;
        self
    }

    /// What a request does when the queue is full: [`OnFull::Drop`] (the default) drops its
    /// record and counts it; [`OnFull::Block`] makes it wait for room before it runs.
    pub fn on_full(mut self, on_full: OnFull) -> Self {
        self.on_full = on_full;
        self
    }

    /// Requests to these paths are not logged: exact paths, or prefixes ending in `/*`
    /// ([`PathRules`](crate::battery::PathRules)). Defaults to none.
    pub fn exclude_paths<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, paths: I) -> Self {
        self.exclude = paths.into_iter().map(|p| p.as_ref().to_owned()).collect();
        self
    }

    /// Query parameters whose values are replaced by `REDACTED`, compared as the application
    /// reads them (percent-decoded, a trailing `[]` dropped, case and `-`/`_` ignored), with
    /// any whose name ends like a credential's (`_token`, `_secret`, `password`, `api_key`,
    /// `signature`, `_sig`); an empty list turns redaction off. Defaults to `token`,
    /// `access_token`, `refresh_token`, `id_token`, `api_key`, `apikey`, `key`, `password`,
    /// `passwd`, `secret`, `client_secret`, `code_verifier`, `sessionid`.
    pub fn redact_query<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Self {
        self.redact = names.into_iter().map(|p| p.as_ref().to_owned()).collect();
        self
    }

    /// Opens the sink and starts the writer.
    ///
    /// # Errors
    ///
    /// A queue of zero, a file that cannot be opened for appending, or a writer thread that
    /// cannot start.
    pub fn build(self) -> Result<AccessLog, ConfigError> {
        if self.queue == 0 {
            return Err(ConfigError::invalid("queue", "must hold at least 1 record"));
        }
        if let Sink::File {
            max_files: 0,
            rotate,
            ..
        } = &self.sink
        {
            if *rotate != Rotate::Never {
                return Err(ConfigError::invalid(
                    "max_files",
                    "must keep at least 1 rotated file",
                ));
            }
        }
        let exclude = crate::battery::PathRules::parse(&self.exclude)
            .map_err(|e| ConfigError::invalid("exclude_paths", e))?;
        let queue = Queue::start(&self.sink, self.queue)?;
        Ok(AccessLog {
            shared: Arc::new(Shared {
                format: self.format,
                on_full: self.on_full,
                exclude,
                redact: self.redact,
                queue,
            }),
        })
    }
}

#[derive(Debug)]
struct Shared {
    format: Format,
    on_full: OnFull,
    exclude: crate::battery::PathRules,
    redact: Vec<String>,
    queue: Arc<Queue>,
}

/// A writer of lines through the same kind of queue and writer thread as the access log, for
/// a service's other log output (its `tracing` lines): a write appends the line under a lock
/// and returns; the thread writes in batches. Full, it drops lines and counts them (and says
/// so in the output, `{"dropped":N}`). Cheap to clone; [`LineWriter::close`] at exit writes
/// what is queued.
///
/// One write is one line (as `tracing-subscriber`'s formatter writes each event): give it to
/// the subscriber as `.with_writer(move || writer.clone())`.
///
/// ```
/// use std::io::Write;
/// use callnext::middleware::access_log::{LineWriter, SharedWriter, Sink};
/// use std::sync::{Arc, Mutex};
///
/// let out = Arc::new(Mutex::new(Vec::new()));
/// let sink = Sink::Writer(SharedWriter(out.clone()));
/// let mut writer = LineWriter::new(&sink, 1024).unwrap();
/// writer.write_all(b"one\n").unwrap();
/// writer.write_all(b"two\n").unwrap();
/// writer.close();
/// assert_eq!(String::from_utf8(out.lock().unwrap().clone()).unwrap(), "one\ntwo\n");
/// ```
#[derive(Debug, Clone)]
pub struct LineWriter {
    queue: Arc<Queue>,
}

impl LineWriter {
    /// Opens `sink` and starts the writer thread; at most `capacity` lines wait.
    ///
    /// # Errors
    ///
    /// A file that cannot be opened for appending, or a thread that cannot start.
    pub fn new(sink: &Sink, capacity: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            queue: Queue::start(sink, capacity)?,
        })
    }

    /// Waits (blocking the thread, at most `timeout`) until every line so far is written.
    pub fn flush_lines(&self, timeout: Duration) -> bool {
        self.queue.flush(timeout)
    }

    /// Writes what is queued and stops the writer; later lines are dropped (counted).
    pub fn close(&self) {
        self.queue.close();
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }
}

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        self.queue.push(line);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs each request; see the [module docs](self). Made by [`AccessLog::builder`].
#[derive(Debug, Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

/// Flushes and counts an [`AccessLog`]'s records from outside the stack (at shutdown).
#[derive(Debug, Clone)]
pub struct AccessLogHandle {
    queue: Arc<Queue>,
}

impl AccessLogHandle {
    /// Waits (blocking the thread, at most `timeout`) until every record queued so far is
    /// written; `false` if that took longer or some records could not be written since the
    /// last flush answered (for an HTTP sink: given up on, or kept only in the fallback file).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.queue.flush(timeout)
    }

    /// Writes what is queued and stops the writer; later records are dropped (counted).
    pub fn close(&self) {
        self.queue.close();
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Records written (for an HTTP sink: received by the receiver).
    pub fn written(&self) -> u64 {
        self.queue.written()
    }

    /// Records an HTTP sink gave up on after its retries (also counted in
    /// [`dropped`](Self::dropped)); 0 for other sinks.
    pub fn unsent(&self) -> u64 {
        self.queue.unsent()
    }
}

impl AccessLog {
    /// The settings, to [`build`](AccessLogBuilder::build).
    pub fn builder() -> AccessLogBuilder {
        AccessLogBuilder::default()
    }

    /// A handle to flush and count the records.
    pub fn handle(&self) -> AccessLogHandle {
        AccessLogHandle {
            queue: Arc::clone(&self.shared.queue),
        }
    }
}
