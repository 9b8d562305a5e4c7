//! [`Stack`]: an ordered, named list of entries, its settings, and building it into a
//! [`StackService`] (adding and ordering entries is in `ordering.rs`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::compile::{compile, Blueprint, Settings};
use super::entry::Entry;
use super::{HttpService, StackService};
use crate::error::ConfigError;
use crate::instrument::{BlockingStats, DEFAULT_BLOCKING_THRESHOLD};

/// An ordered, named list of middlewares in front of an app.
///
/// Registration order is execution order: the first middleware added sees the request first and
/// the response last. Unlike FastAPI/Starlette, where every `add_middleware` prepends, and axum,
/// where `Router::layer` wraps outside what came before, there is one rule here.
///
/// ```
/// use callnext::{Next, Request, Response, Stack, TestClient};
///
/// async fn first(req: Request, next: Next<'_>) -> Response {
///     let mut res = next.run(req).await;
///     res.headers_mut().append("x-order", "first".parse().unwrap());
///     res
/// }
///
/// async fn second(req: Request, next: Next<'_>) -> Response {
///     let mut res = next.run(req).await;
///     res.headers_mut().append("x-order", "second".parse().unwrap());
///     res
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
/// let stack = Stack::new().func(first).func(second);
/// assert_eq!(stack.to_string(), "0 first (function)\n1 second (function)\n");
///
/// let res = TestClient::new(stack.service(app)).get("/").await;
/// // `second` is inner, so it touched the response first.
/// let order: Vec<_> = res.headers().get_all("x-order").iter().collect();
/// assert_eq!(order, ["second", "first"]);
/// # });
/// ```
///
/// A stack is a configuration value: clones, and every service built from it, share its
/// blocking statistics ([`Stack::blocking_report`]). Mistakes (two entries with one name, a
/// zero threshold) are kept and reported when the stack is built: [`Stack::try_service`]
/// returns them, [`Stack::service`] panics with them, at start-up, never at request time.
#[derive(Clone)]
pub struct Stack {
    pub(crate) entries: Vec<Entry>,
    pub(crate) settings: Settings,
    pub(crate) name: Cow<'static, str>,
    pub(crate) app_stats: Arc<BlockingStats>,
    /// Which stack this is, for a metrics registry: shared by clones, renewed when the entries
    /// or the name change.
    pub(crate) identity: Arc<dyn Send + Sync>,
    pub(crate) body_stats: Arc<BlockingStats>,
    /// Background tasks of every service built from this stack, for the wait at shutdown.
    pub(crate) background: Arc<crate::background::Tracker>,
    pub(super) error: Option<ConfigError>,
    #[cfg(feature = "prometheus")]
    pub(crate) metrics: Option<crate::metrics::Metrics>,
    pub(crate) live: Option<crate::admin::LivePage>,
}

impl Default for Stack {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            settings: Settings {
                instrument: true,
                blocking_threshold: DEFAULT_BLOCKING_THRESHOLD,
                server_timing: false,
                record_timings: false,
                fastapi_bodies: true,
                json_rejections: true,
                trusted_proxies: Arc::default(),
                strict_order: false,
                debug: false,
                handlers: super::handlers::Handlers::default(),
                #[cfg(feature = "otel")]
                telemetry: None,
            },
            name: Cow::Borrowed("main"),
            app_stats: Arc::default(),
            identity: Arc::new(()),
            body_stats: Arc::default(),
            background: Arc::default(),
            error: None,
            #[cfg(feature = "prometheus")]
            metrics: None,
            live: None,
        }
    }
}

impl Stack {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stack's name: the `stack` label of its metrics, so several stacks can record into
    /// one registry. Defaults to `main`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self.identity = Arc::new(());
        if self.name.is_empty() {
            self.fail(ConfigError::invalid(
                "name",
                "a stack's name cannot be empty",
            ));
        }
        self
    }

    /// Measures each middleware's exclusive poll time and detects blocking (see
    /// [`instrument`](crate::instrument)). Off, the stack reads no clock at all; Server-Timing,
    /// timings and blocking reports then stay empty. Defaults to on.
    #[must_use]
    pub fn instrument(mut self, on: bool) -> Self {
        self.settings.instrument = on;
        self
    }

    /// A single exclusive poll at least this long is a blocking event: logged (at most once a
    /// second per middleware), counted in metrics and in [`Stack::blocking_report`]. Must be
    /// greater than zero. Defaults to
    /// [`DEFAULT_BLOCKING_THRESHOLD`](crate::instrument::DEFAULT_BLOCKING_THRESHOLD) (10 ms;
    /// the docs there say why).
    #[must_use]
    pub fn blocking_threshold(mut self, threshold: Duration) -> Self {
        if threshold.is_zero() {
            self.fail(ConfigError::invalid(
                "blocking_threshold",
                "must be greater than zero (every poll would be blocking)",
            ));
        }
        self.settings.blocking_threshold = threshold;
        self
    }

    /// The proxies whose forwarding header is believed when each request's
    /// [`ClientIp`](crate::ClientIp) is set from its peer address (axum's
    /// `ConnectInfo<SocketAddr>`, which callnext's server and `axum::serve` put on every
    /// request). Defaults to none: the client address is the peer's, whatever the headers say.
    ///
    /// ```
    /// use callnext::{ClientIp, Stack, TestClient, TrustedProxies};
    /// use axum::{extract::ConnectInfo, routing::get, Router};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let app = Router::new().route("/", get(|ClientIp(ip): ClientIp| async move { ip.to_string() }));
    /// let stack = Stack::new().trusted_proxies(TrustedProxies::parse(["127.0.0.1"]).unwrap());
    /// let client = TestClient::new(stack.service(app));
    /// // The test client's requests come from 127.0.0.1, a trusted proxy here.
    /// let res = client.get("/").header("x-forwarded-for", "203.0.113.5").send().await;
    /// assert_eq!(res.text(), "203.0.113.5");
    /// # });
    /// ```
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: crate::TrustedProxies) -> Self {
        self.settings.trusted_proxies = Arc::new(proxies);
        self
    }

    /// Exports a trace of every request over OTLP (feature `otel`): see
    /// [`telemetry`](crate::telemetry).
    #[cfg(feature = "otel")]
    #[must_use]
    pub fn telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.settings.telemetry = Some(telemetry);
        self
    }

    /// Adds a `Server-Timing` header to every response: each middleware's wall time excluding
    /// the layers inside it, then the app's, in milliseconds
    /// (`Server-Timing: timing;dur=15.2, another;dur=0.0, app;dur=100.4`). It exposes the stack's
    /// internals to clients, so it defaults to off.
    #[must_use]
    pub fn server_timing(mut self, on: bool) -> Self {
        self.settings.server_timing = on;
        self
    }

    /// Attaches a [`RequestTimings`](crate::instrument::RequestTimings) to every response's
    /// extensions (for tests and outer code). Defaults to off.
    #[must_use]
    pub fn record_timings(mut self, on: bool) -> Self {
        self.settings.record_timings = on;
        self
    }

    /// Gives the app's empty-bodied 404 and 405 answers (axum's defaults) FastAPI's JSON bodies,
    /// `{"detail":"Not Found"}` and `{"detail":"Method Not Allowed"}`, keeping `Allow`.
    /// Defaults to on.
    #[must_use]
    pub fn fastapi_status_bodies(mut self, on: bool) -> Self {
        self.settings.fastapi_bodies = on;
        self
    }

    /// Turns the app's plain-text error answers (axum's own extractors' rejections, its
    /// `Missing request extension`, an app's `(StatusCode::BAD_REQUEST, "text")`) into
    /// callnext's JSON errors with the same status, so a service that uses axum's extractors
    /// still answers as FastAPI does: `{"detail": "<the text>"}`, or for a 5xx
    /// `{"detail":"Internal Server Error"}` (the text is logged). Only text of known size up
    /// to 8 KiB is converted; streams are left alone. Defaults to on.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use callnext::{Stack, TestClient};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // axum's own Query extractor, whose rejection is plain text.
    /// async fn page(axum::extract::Query(p): axum::extract::Query<std::collections::HashMap<String, u32>>) -> String {
    ///     format!("{p:?}")
    /// }
    /// let app = Router::new().route("/", get(page));
    /// let res = TestClient::new(Stack::new().service(app.clone())).get("/?n=x").await;
    /// assert_eq!(res.status(), 400);
    /// assert_eq!(res.header("content-type"), Some("application/json"));
    /// assert!(res.text().starts_with(r#"{"detail":"Failed to deserialize query string"#));
    ///
    /// let plain = TestClient::new(Stack::new().json_rejections(false).service(app)).get("/?n=x").await;
    /// assert!(plain.header("content-type").unwrap().starts_with("text/plain"));
    /// # });
    /// ```
    #[must_use]
    pub fn json_rejections(mut self, on: bool) -> Self {
        self.settings.json_rejections = on;
        self
    }

    /// Records the stack's requests and middlewares into `metrics` (see
    /// [`metrics`](crate::metrics)). Defaults to no metrics.
    #[cfg(feature = "prometheus")]
    #[must_use]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Records the stack's requests for the live stack page (see [`admin::live`]): each entry's
    /// calls, own time, early answers and blocking events, the routes, the slowest requests.
    /// Without it nothing is recorded beyond the metrics. Serve the page with
    /// [`Admin::live_page`].
    ///
    /// [`admin::live`]: crate::admin::live
    /// [`Admin::live_page`]: crate::admin::Admin::live_page
    #[must_use]
    pub fn live(mut self, page: &crate::admin::LivePage) -> Self {
        self.live = Some(page.clone());
        self
    }

    /// Refuse to build a stack whose order breaks a rule of [`Stack::lint`]
    /// ([`ConfigErrorKind::OrderRule`](crate::ConfigErrorKind::OrderRule)) instead of logging a
    /// warning. Defaults to off.
    ///
    /// ```
    /// use callnext::middleware::{Cors, SetRequestId};
    /// use callnext::{ConfigErrorKind, Stack};
    ///
    /// let cors = Cors::builder().allow_origins(["https://app.example"]).build().unwrap();
    /// let stack = Stack::new().hook(cors).hook(SetRequestId::new()).strict_order(true);
    /// let err = stack.try_service(axum::Router::new()).unwrap_err();
    /// assert_eq!(err.kind(), ConfigErrorKind::OrderRule);
    /// ```
    #[must_use]
    pub fn strict_order(mut self, on: bool) -> Self {
        self.settings.strict_order = on;
        self
    }

    /// The first configuration mistake made while building this stack, if any.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] [`Stack::try_service`] would return before building anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.error.clone().map_or(Ok(()), Err)
    }

    /// Puts the stack in front of `app` (usually an axum `Router`), giving one tower service.
    ///
    /// An axum `Router` is told to report the route template it matched, for metrics, logs and
    /// blocking reports. Each tower layer's service is built here, once.
    ///
    /// # Errors
    ///
    /// Any mistake [`Stack::validate`] reports, a tower layer that panics while its service is
    /// built ([`ConfigErrorKind::LayerFailed`](crate::ConfigErrorKind::LayerFailed): tower-http's `CorsLayer` does on an invalid
    /// configuration), and a metrics registry that already has another stack of this name
    /// ([`ConfigErrorKind::MetricsConflict`](crate::ConfigErrorKind::MetricsConflict)).
    pub fn try_service<S: HttpService>(&self, app: S) -> Result<StackService, ConfigError> {
        self.validate()?;
        for warning in self.lint() {
            if self.settings.strict_order && warning.is_order_rule() {
                return Err(ConfigError::new(
                    crate::ConfigErrorKind::OrderRule,
                    warning.to_string(),
                ));
            }
            tracing::warn!(stack = %self.name, rule = warning.rule(), "{warning}");
        }
        let blueprint = Blueprint {
            entries: &self.entries,
            settings: &self.settings,
            name: &self.name,
            app_stats: &self.app_stats,
            identity: &self.identity,
            body_stats: &self.body_stats,
            background: &self.background,
            #[cfg(feature = "prometheus")]
            metrics: self.metrics.as_ref(),
            live: self.live.as_ref(),
        };
        compile(&blueprint, app)
    }

    /// As [`Stack::try_service`], for start-up code where a configuration mistake should stop
    /// the program.
    ///
    /// # Panics
    ///
    /// With the [`ConfigError`]'s message, when [`Stack::try_service`] fails.
    #[track_caller]
    pub fn service<S: HttpService>(&self, app: S) -> StackService {
        self.try_service(app)
            .unwrap_or_else(|err| panic!("invalid callnext stack: {err}"))
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for info in self.describe() {
            writeln!(f, "{} {} ({})", info.index, info.name, info.kind)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("name", &self.name)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// A stack is a tower layer: use it in axum's `Router::layer`, a `ServiceBuilder` or under hyper.
///
/// axum's `Router::layer` builds one service per route and method (and for the fallback):
/// each gets its own copy of the stack's tower layers (a `ConcurrencyLimitLayer` then limits
/// each route apart) and the stack is compiled once per route. To run one stack in front of a
/// whole router, use [`Stack::service`] with the router instead.
///
/// # Panics
///
/// As [`Stack::service`].
impl<S: HttpService> Layer<S> for Stack {
    type Service = StackService;

    fn layer(&self, inner: S) -> StackService {
        self.service(inner)
    }
}
