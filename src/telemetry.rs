//! OpenTelemetry traces over OTLP/HTTP: one server span per request, the stack's middlewares as
//! child spans (or events) with their own time, blocking polls as events, W3C trace context
//! continued from the caller. Feature `otel`; `[telemetry]` in the configuration file.
//!
//! - The server span is named `METHOD route` (`GET /items/{id}`) and carries
//!   `http.request.method`, `http.route`, `http.response.status_code`, `url.path`,
//!   `client.address` (the [`ClientIp`]) and `server.address`; a 5xx sets
//!   its status to error.
//! - Each middleware that ran is a child span from its first poll to its last, with
//!   `callnext.exclusive_ms` (its own time) and `callnext.wall_ms` (wall time, inner layers
//!   excluded), from the stack's instrumentation (on by default). A poll at or over the
//!   blocking threshold is a `blocking` event on its middleware's span.
//! - A `traceparent` header continues the caller's trace (its sampled flag decides); without
//!   one a trace is sampled with `sampling_ratio`. Traces with a 5xx or a blocking poll are
//!   kept whatever the sampling said (unless turned off).
//! - Every request carries its [`TraceContext`] (the access log writes its `trace_id` beside
//!   the request id). Spans are exported in batches from a thread of their own: requests never
//!   wait on the collector; [`Telemetry::flush`] at shutdown sends what is queued.
//!
//! ```
//! use callnext::telemetry::Telemetry;
//! use callnext::Stack;
//!
//! let telemetry = Telemetry::builder()
//!     .endpoint("http://127.0.0.1:4318")
//!     .service_name("orders")
//!     .sampling_ratio(0.1)
//!     .build()
//!     .unwrap();
//! let stack = Stack::new().telemetry(telemetry.clone());
//! # let _ = stack;
//! telemetry.shutdown();
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanProcessor,
};

use crate::http_client::HttpClient;
use crate::instrument::clock::ticks_to_duration;
use crate::{ClientIp, ConfigError, Request, Response};

/// The attribute that marks a span not to export (sampled out after the fact).
const DROP: &str = "callnext.unsampled";

/// How the spans are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `http/protobuf` (the default of collectors).
    #[default]
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

/// How the middlewares' timings appear in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MiddlewareSpans {
    /// A child span per middleware that ran (the default: the waterfall in Jaeger or Tempo).
    #[default]
    Spans,
    /// An event per middleware on the server span (cheaper to store).
    Events,
    /// Neither.
    Off,
}

/// The trace a request belongs to: in its extensions (and its response's) when the stack has
/// [`Telemetry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
    sampled: bool,
}

impl TraceContext {
    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The request's server span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> &str {
        &self.span_id
    }

    /// Whether the trace was sampled when the request came in (a 5xx or a blocking poll can
    /// still keep it).
    pub fn sampled(&self) -> bool {
        self.sampled
    }
}

/// The settings of [`Telemetry`], checked by [`TelemetryBuilder::build`].
#[derive(Debug, Clone)]
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
        let url = if uri.path() == "/" {
            format!("{}v1/traces", uri)
        } else {
            uri.to_string()
        };
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(ConfigError::invalid(
                "sampling_ratio",
                format!("expected 0 to 1, got {}", self.sampling_ratio),
            ));
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                return Err(ConfigError::invalid(
                    "headers",
                    format!("`{}` is not a valid header", crate::Printable::new(name)),
                ));
            }
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(ExportClient::start(self.timeout)?)
            .with_endpoint(url)
            .with_protocol(match self.protocol {
                Protocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
                Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
            })
            .with_headers(self.headers.into_iter().collect())
            .with_timeout(self.timeout)
            .build()
            .map_err(|err| ConfigError::invalid("endpoint", err.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Sampled(BatchSpanProcessor::builder(exporter).build()))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(self.service_name)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("callnext");
        Ok(Telemetry {
            inner: Arc::new(Inner {
                provider,
                tracer,
                ratio_bound: ratio_bound(self.sampling_ratio),
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

/// Exports spans; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    ratio_bound: u64,
    keep_errors: bool,
    keep_blocking: bool,
    middlewares: MiddlewareSpans,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("middlewares", &self.inner.middlewares)
            .finish_non_exhaustive()
    }
}

/// One request's trace until it is answered.
pub(crate) struct RequestTrace {
    span: opentelemetry_sdk::trace::Span,
    context: TraceContext,
    sampled: bool,
    method: http::Method,
    /// The clock's ticks and the wall time when it started, to place the middlewares.
    ticks: u64,
    at: SystemTime,
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
        }
    }

    /// Sends the spans queued so far (blocking the thread); `false` if the export failed.
    pub fn flush(&self) -> bool {
        self.inner.provider.force_flush().is_ok()
    }

    /// Sends what is queued and stops the exporter.
    pub fn shutdown(&self) {
        let _ = self.inner.provider.shutdown();
    }

    /// Opens the request's server span, continuing the caller's trace, and puts its
    /// [`TraceContext`] on the request. (Boxed: the span is large, and the request's future,
    /// which holds it, must stay small.)
    pub(crate) fn start(&self, req: &mut Request) -> Box<RequestTrace> {
        let parent = TraceContextPropagator::new()
            .extract(&opentelemetry_http::HeaderExtractor(req.headers()));
        let remote = parent.span().span_context().clone();
        let mut attributes = vec![
            KeyValue::new("http.request.method", req.method().as_str().to_owned()),
            KeyValue::new("url.path", req.uri().path().to_owned()),
        ];
        if let Some(ClientIp(ip)) = ClientIp::of(req) {
            attributes.push(KeyValue::new("client.address", ip.to_string()));
        }
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host());
        if let Some(host) = host {
            let name = host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            });
            attributes.push(KeyValue::new("server.address", name.to_owned()));
        }
        let at = SystemTime::now();
        let ticks = crate::instrument::clock::now();
        let span = self.inner.tracer.build_with_context(
            opentelemetry::trace::SpanBuilder::from_name(Cow::Owned(req.method().to_string()))
                .with_kind(SpanKind::Server)
                .with_start_time(at)
                .with_attributes(attributes),
            &parent,
        );
        let context = span.span_context().clone();
        let sampled = if remote.is_valid() {
            remote.is_sampled()
        } else {
            let bytes = context.trace_id().to_bytes();
            let low = u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")) >> 1;
            low < self.inner.ratio_bound || self.inner.ratio_bound == u64::MAX
        };
        let context = TraceContext {
            trace_id: context.trace_id().to_string(),
            span_id: context.span_id().to_string(),
            sampled,
        };
        req.extensions_mut().insert(context.clone());
        Box::new(RequestTrace {
            span,
            context,
            sampled,
            method: req.method().clone(),
            ticks,
            at,
        })
    }

    /// Closes the request's span: its route and status, the middlewares' timings, and whether
    /// it is kept.
    pub(crate) fn finish(
        &self,
        mut trace: Box<RequestTrace>,
        route: &str,
        res: &mut Response,
        timings: Option<Timings<'_>>,
    ) {
        let inner = &self.inner;
        let status = res.status();
        let blocked = timings.as_ref().is_some_and(Timings::blocked);
        let keep = trace.sampled
            || (inner.keep_errors && status.is_server_error())
            || (inner.keep_blocking && blocked);
        res.extensions_mut().insert(trace.context.clone());
        let span = &mut trace.span;
        if !keep {
            span.set_attribute(KeyValue::new(DROP, true));
            span.end();
            return;
        }
        span.update_name(format!("{} {route}", trace.method));
        span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_status(Status::error(status.to_string()));
        }
        if let Some(timings) = timings {
            let parent = Context::new().with_remote_span_context(span.span_context().clone());
            let at = |ticks: u64| trace.at + ticks_to_duration(ticks.saturating_sub(trace.ticks));
            for entry in timings.entries() {
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                let figures = vec![
                    KeyValue::new("callnext.middleware", entry.name.to_owned()),
                    KeyValue::new("callnext.exclusive_ms", ms(entry.exclusive)),
                    KeyValue::new("callnext.wall_ms", ms(entry.wall)),
                ];
                let blocking = entry.blocking.then(|| {
                    vec![
                        KeyValue::new("callnext.middleware", entry.name.to_owned()),
                        KeyValue::new("callnext.poll_ms", ms(entry.worst_poll)),
                        KeyValue::new("http.route", route.to_owned()),
                    ]
                });
                match inner.middlewares {
                    MiddlewareSpans::Spans => {
                        let mut child = inner.tracer.build_with_context(
                            opentelemetry::trace::SpanBuilder::from_name(entry.name.to_owned())
                                .with_kind(SpanKind::Internal)
                                .with_start_time(at(entry.first))
                                .with_attributes(figures),
                            &parent,
                        );
                        if let Some(attrs) = blocking {
                            child.add_event_with_timestamp("blocking", at(entry.last), attrs);
                        }
                        child.end_with_timestamp(at(entry.last));
                    }
                    MiddlewareSpans::Events => {
                        span.add_event_with_timestamp("middleware", at(entry.first), figures);
                        if let Some(attrs) = blocking {
                            span.add_event_with_timestamp("blocking", at(entry.last), attrs);
                        }
                    }
                    MiddlewareSpans::Off => {
                        if let Some(attrs) = blocking {
                            span.add_event_with_timestamp("blocking", at(entry.last), attrs);
                        }
                    }
                }
            }
        }
        span.end();
    }
}

/// A request's per-boundary figures, read from the stack's instrumentation.
pub(crate) struct Timings<'a> {
    pub(crate) names: &'a [Box<str>],
    pub(crate) slots: &'a [crate::instrument::request::Slot],
    pub(crate) spans: &'a [crate::instrument::timings::Span],
    pub(crate) threshold: u64,
}

/// One boundary's place and figures in a request.
struct EntryTiming<'a> {
    name: &'a str,
    first: u64,
    last: u64,
    exclusive: Duration,
    wall: Duration,
    worst_poll: Duration,
    blocking: bool,
}

impl Timings<'_> {
    fn blocked(&self) -> bool {
        self.threshold > 0
            && self
                .slots
                .iter()
                .any(|s| s.worst.load(std::sync::atomic::Ordering::Relaxed) >= self.threshold)
    }

    /// The boundaries that ran, in stack order.
    fn entries(&self) -> Vec<EntryTiming<'_>> {
        use std::sync::atomic::Ordering::Relaxed;
        let walls = crate::instrument::timings::walls_excluding_inner(self.slots, self.spans);
        self.names
            .iter()
            .zip(self.slots)
            .zip(walls)
            .filter(|((_, slot), _)| slot.ran())
            .map(|((name, slot), wall)| {
                let worst = slot.worst.load(Relaxed);
                EntryTiming {
                    name,
                    first: slot.first.load(Relaxed),
                    last: slot.last.load(Relaxed).max(slot.first.load(Relaxed)),
                    exclusive: ticks_to_duration(slot.exclusive.load(Relaxed)),
                    wall,
                    worst_poll: ticks_to_duration(worst),
                    blocking: self.threshold > 0 && worst >= self.threshold,
                }
            })
            .collect()
    }
}

/// Passes on the spans to keep (those not marked [`DROP`]) to the batch processor.
#[derive(Debug)]
struct Sampled(BatchSpanProcessor);

impl SpanProcessor for Sampled {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.attributes.iter().any(|kv| kv.key.as_str() == DROP) {
            self.0.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

/// The exporter's HTTP client: callnext's, driven by a runtime on a thread of its own (the
/// batch processor exports from its own thread, outside any runtime).
#[derive(Debug)]
struct ExportClient {
    client: HttpClient,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl ExportClient {
    fn start(timeout: Duration) -> Result<Self, ConfigError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ConfigError::invalid("endpoint", format!("cannot start the exporter: {e}"))
            })?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("callnext-otlp".to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| {
                ConfigError::invalid("endpoint", format!("cannot start the exporter: {e}"))
            })?;
        Ok(Self {
            client: HttpClient::new(timeout),
            runtime: handle,
            timeout,
        })
    }
}

impl opentelemetry_http::HttpClient for ExportClient {
    // The trait is declared with `async_trait`; this is its expanded form.
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: http::Request<Bytes>,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<http::Response<Bytes>, opentelemetry_http::HttpError>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.runtime.spawn(async move {
            let request = request.map(http_body_util::Full::new);
            client.send(request, timeout, 1 << 20).await
        });
        Box::pin(async move {
            match task.await {
                Ok(Ok(res)) => Ok(res),
                Ok(Err(err)) => Err(err.to_string().into()),
                Err(err) => Err(err.to_string().into()),
            }
        })
    }
}
