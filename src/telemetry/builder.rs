//! [`TelemetryBuilder`]: the exporter's settings, checked when built.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The settings of [`Telemetry`], checked by [`TelemetryBuilder::build`].
#[derive(Clone)]
#[must_use]
pub struct TelemetryBuilder {
    endpoint: String,
    protocol: Protocol,
    headers: Vec<(String, String)>,
    service_name: String,
    sampling_ratio: f64,
    keep_errors: bool,
    keep_blocking: bool,
    middlewares: MiddlewareSpans,
    timeout: Duration,
    trust: TrustIncoming,
    max_incoming: u32,
}

impl std::fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials (an API key, `authorization`): names only.
        f.debug_struct("TelemetryBuilder")
            .field("endpoint", &crate::redact::redact_urls(&self.endpoint))
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("sampling_ratio", &self.sampling_ratio)
            .finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// The collector, `http://host:4318` (spans are POSTed to `/v1/traces` under it) or a full
    /// URL with its path. Required.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// How spans are encoded. Defaults to [`Protocol::HttpProtobuf`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// A header sent with every export (`authorization`, ...).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `service.name` resource. Defaults to `callnext`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// The share of new traces sampled, 0 to 1 (a caller's `traceparent` decides for its
    /// own). Defaults to 1.
    pub fn sampling_ratio(mut self, ratio: f64) -> Self {
        self.sampling_ratio = ratio;
        self
    }

    /// Whether traces with a 5xx answer or a blocking poll are kept whatever the sampling
    /// said. Both default to yes.
    pub fn always_keep(mut self, errors: bool, blocking: bool) -> Self {
        self.keep_errors = errors;
        self.keep_blocking = blocking;
        self
    }

    /// Whose `traceparent` is continued. Defaults to [`TrustIncoming::TrustedProxies`].
    pub fn trust_incoming(mut self, trust: TrustIncoming) -> Self {
        self.trust = trust;
        self
    }

    /// At most this many traces a second are kept only because their caller's `traceparent`
    /// asked for it (beyond `sampling_ratio`). Defaults to 100.
    pub fn max_incoming_sampled(mut self, per_second: u32) -> Self {
        self.max_incoming = per_second;
        self
    }

    /// How the middlewares' timings appear. Defaults to [`MiddlewareSpans::Spans`].
    pub fn middlewares(mut self, how: MiddlewareSpans) -> Self {
        self.middlewares = how;
        self
    }

    /// The deadline of one export. Defaults to 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and starts the exporter's thread.
    ///
    /// # Errors
    ///
    /// No endpoint or one that is not an `http://` or `https://` URL, a ratio outside 0 to 1,
    /// an invalid header, or an exporter that cannot start.
    pub fn build(self) -> Result<Telemetry, ConfigError> {
        let uri = crate::http_client::http_url("endpoint", &self.endpoint)?;
        // A bare collector address gets the traces path, as OTEL_EXPORTER_OTLP_ENDPOINT does.
        let uri = if uri.path() == "/" {
            crate::http_client::http_url("endpoint", &format!("{uri}v1/traces"))?
        } else {
            uri
        };
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(ConfigError::invalid(
                "sampling_ratio",
                format!("expected 0 to 1, got {}", self.sampling_ratio),
            ));
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            match (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => headers.push((name, value)),
                _ => {
                    return Err(ConfigError::invalid(
                        "headers",
                        format!("`{}` is not a valid header", crate::Printable::new(name)),
                    ))
                }
            }
        }
        let encoding = match self.protocol {
            Protocol::HttpProtobuf => Encoding::Protobuf,
            Protocol::HttpJson => Encoding::Json,
        };
        let exporter = Exporter::start(
            Target {
                uri,
                headers,
                service: self.service_name,
                timeout: self.timeout,
            },
            encoding,
        )?;
        Ok(Telemetry {
            inner: Arc::new(Inner {
                exporter,
                ratio_bound: ratio_bound(self.sampling_ratio),
                trust: self.trust,
                incoming: crate::clock::PerSecond::default(),
                max_incoming: self.max_incoming,
                keep_errors: self.keep_errors,
                keep_blocking: self.keep_blocking,
                middlewares: self.middlewares,
            }),
        })
    }
}

/// Traces whose id, read as a number, is below this are sampled (the specification's
/// `TraceIdRatioBased`, on the lower 8 bytes).
fn ratio_bound(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio * (1u64 << 63) as f64) as u64
    }
}

impl Telemetry {
    /// The settings; an endpoint is required.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder {
            endpoint: String::new(),
            protocol: Protocol::HttpProtobuf,
            headers: Vec::new(),
            service_name: "callnext".to_owned(),
            sampling_ratio: 1.0,
            keep_errors: true,
            keep_blocking: true,
            middlewares: MiddlewareSpans::Spans,
            timeout: Duration::from_secs(10),
            trust: TrustIncoming::TrustedProxies,
            max_incoming: 100,
        }
    }
}
