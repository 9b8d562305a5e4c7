//! [`Stack`]: an ordered, named list of middlewares. Ordering happens here.
//!
//! Registration order is execution order: the first middleware added sees the request first
//! and the response last.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tower::{BoxError, Layer, Service};

use crate::instrument::{SharedStats, DEFAULT_BLOCKING_THRESHOLD};
use crate::middleware::{
    DynMiddleware, FnEntry, FnWithStateEntry, MiddlewareFn, MiddlewareFnWithState, NextService,
    StructEntry, TowerEntry,
};
use crate::service::Shared;
use crate::{BlockingReport, ConfigError, Middleware, Request, StackService};

/// What kind of middleware an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MiddlewareKind {
    /// An `async fn(Request, Next)`.
    Function,
    /// A struct implementing [`Middleware`].
    Struct,
    /// A tower [`Layer`].
    Tower,
}

impl fmt::Display for MiddlewareKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Function => "function",
            Self::Struct => "struct",
            Self::Tower => "tower",
        })
    }
}

/// One middleware, named, ready to go into a [`Stack`].
///
/// Build one with [`Entry::func`], [`Entry::func_with_state`], [`Entry::middleware`] or
/// [`Entry::layer`]; [`Stack`] has shortcuts that build and append in one call.
pub struct Entry {
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: MiddlewareKind,
    pub(crate) middleware: Box<dyn DynMiddleware>,
    pub(crate) stats: SharedStats,
}

impl Entry {
    /// A function middleware: `async fn(Request, Next) -> impl IntoResponse`.
    ///
    /// Named after the function (`timing` for `my_crate::timing`); see [`Entry::named`].
    pub fn func<F>(f: F) -> Self
    where
        F: for<'a> MiddlewareFn<'a>,
    {
        Self {
            name: Cow::Borrowed(short_type_name::<F>()),
            kind: MiddlewareKind::Function,
            middleware: Box::new(FnEntry(f)),
            stats: SharedStats::default(),
        }
    }

    /// A function middleware that borrows shared state:
    /// `async fn(&S, Request, Next) -> impl IntoResponse`.
    pub fn func_with_state<F, S>(state: S, f: F) -> Self
    where
        S: Send + Sync + 'static,
        F: for<'a> MiddlewareFnWithState<'a, S>,
    {
        Self {
            name: Cow::Borrowed(short_type_name::<F>()),
            kind: MiddlewareKind::Function,
            middleware: Box::new(FnWithStateEntry { f, state }),
            stats: SharedStats::default(),
        }
    }

    /// A struct middleware. Named after its type (`Auth` for `my_crate::Auth`).
    pub fn middleware<M: Middleware>(m: M) -> Self {
        Self {
            name: Cow::Borrowed(short_type_name::<M>()),
            kind: MiddlewareKind::Struct,
            middleware: Box::new(StructEntry(m)),
            stats: SharedStats::default(),
        }
    }

    /// A tower layer, under `name`. Its service is built per request around the rest of the
    /// stack; its errors become 500 responses.
    pub fn layer<L, B>(name: impl Into<Cow<'static, str>>, layer: L) -> Self
    where
        L: Layer<NextService> + Send + Sync + 'static,
        L::Service: Service<Request, Response = http::Response<B>> + Send + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
        <L::Service as Service<Request>>::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            name: name.into(),
            kind: MiddlewareKind::Tower,
            middleware: Box::new(TowerEntry {
                layer,
                _body: PhantomData,
            }),
            stats: SharedStats::default(),
        }
    }

    /// Renames the entry: the name shows in [`Stack::describe`], logs and metrics, and is what
    /// [`Stack::insert_before`] and [`Stack::insert_after`] look up.
    #[must_use]
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entry's kind.
    pub fn kind(&self) -> MiddlewareKind {
        self.kind
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

/// The last path segment of a type's name, without generics: `timing` for `app::timing`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// How one entry of a stack describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Position: 0 runs first on the request, last on the response.
    pub index: usize,
    /// The entry's name.
    pub name: String,
    /// The entry's kind.
    pub kind: MiddlewareKind,
}

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
#[derive(Clone, Default)]
pub struct Stack {
    entries: Vec<Arc<Entry>>,
    settings: Settings,
    app_stats: SharedStats,
}

/// Per-stack instrumentation settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) instrument: bool,
    pub(crate) blocking_threshold: Duration,
    pub(crate) server_timing: bool,
    pub(crate) record_timings: bool,
    pub(crate) metrics_path: Option<Arc<str>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            instrument: true,
            blocking_threshold: DEFAULT_BLOCKING_THRESHOLD,
            server_timing: false,
            record_timings: false,
            metrics_path: None,
        }
    }
}

impl Stack {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
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
    /// second per middleware), counted in metrics and in [`Stack::blocking_report`].
    /// Defaults to [`DEFAULT_BLOCKING_THRESHOLD`](crate::instrument::DEFAULT_BLOCKING_THRESHOLD)
    /// (10 ms; the docs there say why).
    #[must_use]
    pub fn blocking_threshold(mut self, threshold: Duration) -> Self {
        self.settings.blocking_threshold = threshold;
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

    /// Records Prometheus metrics (see [`metrics`](crate::metrics)) and answers `GET path` with
    /// their text exposition, before any middleware runs. Defaults to off.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSetting`] when `path` does not start with `/`.
    pub fn metrics_endpoint(mut self, path: impl Into<String>) -> Result<Self, ConfigError> {
        let path = path.into();
        if !path.starts_with('/') {
            return Err(ConfigError::InvalidSetting {
                setting: "metrics_endpoint",
                reason: format!("the path must start with `/`, got `{path}`"),
            });
        }
        self.settings.metrics_path = Some(path.into());
        Ok(self)
    }

    /// The blocking events seen by every service built from this stack (or its clones).
    pub fn blocking_report(&self) -> BlockingReport {
        BlockingReport::collect(
            self.entries
                .iter()
                .map(|e| (&*e.name, &*e.stats))
                .chain(std::iter::once(("app", &*self.app_stats))),
        )
    }

    /// Appends an entry (it runs after every entry already in the stack).
    #[must_use]
    pub fn push(mut self, entry: Entry) -> Self {
        self.entries.push(Arc::new(entry));
        self
    }

    /// Appends a function middleware: `async fn(Request, Next) -> impl IntoResponse`.
    ///
    /// ```
    /// use callnext::{HttpError, Next, Request, Response, Stack, TestClient};
    ///
    /// async fn require_key(req: Request, next: Next<'_>) -> Result<Response, HttpError> {
    ///     if !req.headers().contains_key("x-api-key") {
    ///         return Err(HttpError::unauthorized("Missing API key"));
    ///     }
    ///     Ok(next.run(req).await)
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    /// let client = TestClient::new(Stack::new().func(require_key).service(app));
    ///
    /// let res = client.get("/").await;
    /// assert_eq!(res.status(), 401);
    /// assert_eq!(res.text(), r#"{"detail":"Missing API key"}"#);
    ///
    /// let res = client.request(http::Request::get("/").header("x-api-key", "k").body(Default::default()).unwrap()).await;
    /// assert_eq!(res.status(), 200);
    /// # });
    /// ```
    #[must_use]
    pub fn func<F>(self, f: F) -> Self
    where
        F: for<'a> MiddlewareFn<'a>,
    {
        self.push(Entry::func(f))
    }

    /// Appends a function middleware that borrows `state`:
    /// `async fn(&S, Request, Next) -> impl IntoResponse`.
    ///
    /// ```
    /// use callnext::{Next, Request, Response, Stack, TestClient};
    ///
    /// struct Greeting(&'static str);
    ///
    /// async fn greet(state: &Greeting, req: Request, next: Next<'_>) -> Response {
    ///     let mut res = next.run(req).await;
    ///     res.headers_mut().insert("x-greeting", state.0.parse().unwrap());
    ///     res
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    /// let client = TestClient::new(Stack::new().func_with_state(Greeting("hi"), greet).service(app));
    /// assert_eq!(client.get("/").await.header("x-greeting"), Some("hi"));
    /// # });
    /// ```
    #[must_use]
    pub fn func_with_state<F, S>(self, state: S, f: F) -> Self
    where
        S: Send + Sync + 'static,
        F: for<'a> MiddlewareFnWithState<'a, S>,
    {
        self.push(Entry::func_with_state(state, f))
    }

    /// Appends a struct middleware (see [`Middleware`]).
    #[must_use]
    pub fn middleware<M: Middleware>(self, m: M) -> Self {
        self.push(Entry::middleware(m))
    }

    /// Appends a tower layer under `name`, e.g. tower-http's `CorsLayer`.
    #[must_use]
    pub fn layer<L, B>(self, name: impl Into<Cow<'static, str>>, layer: L) -> Self
    where
        L: Layer<NextService> + Send + Sync + 'static,
        L::Service: Service<Request, Response = http::Response<B>> + Send + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
        <L::Service as Service<Request>>::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.push(Entry::layer(name, layer))
    }

    /// Inserts `entry` just before the entry named `anchor` (so it runs before it).
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownMiddleware`] when no entry is named `anchor`, and
    /// [`ConfigError::AmbiguousMiddleware`] when several are.
    pub fn insert_before(self, anchor: &str, entry: Entry) -> Result<Self, ConfigError> {
        let at = self.position(anchor)?;
        Ok(self.insert_at(at, entry))
    }

    /// Inserts `entry` just after the entry named `anchor` (so it runs after it).
    ///
    /// # Errors
    ///
    /// As [`Stack::insert_before`].
    pub fn insert_after(self, anchor: &str, entry: Entry) -> Result<Self, ConfigError> {
        let at = self.position(anchor)? + 1;
        Ok(self.insert_at(at, entry))
    }

    fn insert_at(mut self, at: usize, entry: Entry) -> Self {
        self.entries.insert(at, Arc::new(entry));
        self
    }

    fn position(&self, name: &str) -> Result<usize, ConfigError> {
        let mut found = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name == name);
        match (found.next(), found.count()) {
            (Some((i, _)), 0) => Ok(i),
            (Some(_), more) => Err(ConfigError::AmbiguousMiddleware {
                name: name.to_owned(),
                count: more + 1,
            }),
            (None, _) => Err(ConfigError::UnknownMiddleware {
                name: name.to_owned(),
                known: self.entries.iter().map(|e| e.name.to_string()).collect(),
            }),
        }
    }

    /// The entries in execution order.
    pub fn describe(&self) -> Vec<EntryInfo> {
        self.entries
            .iter()
            .enumerate()
            .map(|(index, e)| EntryInfo {
                index,
                name: e.name.to_string(),
                kind: e.kind,
            })
            .collect()
    }

    /// How many entries the stack has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the stack has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Puts the stack in front of `app` (usually an axum `Router`), giving one tower service.
    ///
    /// An axum `Router` is told to report the route template it matched, for metrics, logs and
    /// blocking reports. The app's empty-bodied 404 and 405 answers (axum's defaults) become FastAPI's JSON ones,
    /// `{"detail":"Not Found"}` and `{"detail":"Method Not Allowed"}`, keeping `Allow`.
    pub fn service<S, B>(&self, app: S) -> StackService
    where
        S: Service<Request, Response = http::Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        StackService {
            shared: Arc::new(Shared::build(
                &self.entries,
                self.settings.clone(),
                Arc::clone(&self.app_stats),
                app,
            )),
        }
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
        f.debug_list()
            .entries(self.entries.iter().map(|e| &**e))
            .finish()
    }
}

/// A stack is a tower layer: use it in axum's `Router::layer`, a `ServiceBuilder` or under hyper.
impl<S, B> Layer<S> for Stack
where
    S: Service<Request, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Service = StackService;

    fn layer(&self, inner: S) -> StackService {
        self.service(inner)
    }
}
