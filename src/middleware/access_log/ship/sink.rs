//! [`HttpSink`]: where and how the access log is shipped over HTTP, checked when the log is
//! built.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Where and how an access log's records are sent over HTTP; given to
/// [`Sink::Http`](crate::middleware::access_log::Sink::Http) and checked when the log is built.
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

    pub(in crate::middleware::access_log) fn start(&self) -> Result<Shipper, ConfigError> {
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
            missed: 0,
        })
    }
}
