//! [`Stack`]: an ordered, named list of middlewares. Ordering happens here.
//!
//! Registration order is execution order: the first middleware added sees the request first
//! and the response last.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::StatusCode;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::middleware::{
    DynMiddleware, FnEntry, FnWithStateEntry, MiddlewareFn, MiddlewareFnWithState, NextService,
    StructEntry, TowerEntry,
};
use crate::{error, ConfigError, HttpError, Middleware, Next, Request, Response};

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
        }
    }

    /// A struct middleware. Named after its type (`Auth` for `my_crate::Auth`).
    pub fn middleware<M: Middleware>(m: M) -> Self {
        Self {
            name: Cow::Borrowed(short_type_name::<M>()),
            kind: MiddlewareKind::Struct,
            middleware: Box::new(StructEntry(m)),
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
}

impl Stack {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
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
    /// The app's empty-bodied 404 and 405 answers (axum's defaults) become FastAPI's JSON ones,
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
            shared: Arc::new(Shared {
                entries: self.entries.clone().into_boxed_slice(),
                endpoint: Box::new(ServiceEndpoint {
                    service: app,
                    _body: PhantomData,
                }),
            }),
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

/// What a request walks: the entries, then the endpoint.
pub(crate) struct Shared {
    pub(crate) entries: Box<[Arc<Entry>]>,
    pub(crate) endpoint: Box<dyn Endpoint>,
}

pub(crate) trait Endpoint: Send + Sync + 'static {
    fn call(&self, req: Request) -> BoxFuture<'static, Response>;
}

struct ServiceEndpoint<S, B> {
    service: S,
    _body: PhantomData<fn() -> B>,
}

impl<S, B> Endpoint for ServiceEndpoint<S, B>
where
    S: Service<Request, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn call(&self, req: Request) -> BoxFuture<'static, Response> {
        let service = self.service.clone();
        Box::pin(async move {
            match service.oneshot(req).await {
                Ok(res) => fastapi_status_body(res.map(Body::new)),
                Err(err) => {
                    let err: BoxError = err.into();
                    tracing::error!(error = %err, "app service failed; answered 500");
                    HttpError::internal().into_response()
                }
            }
        })
    }
}

/// Gives the router's bare 404/405 answers FastAPI's JSON bodies.
fn fastapi_status_body(mut res: Response) -> Response {
    use http_body::Body as _;
    let detail = match res.status() {
        StatusCode::NOT_FOUND => "Not Found",
        StatusCode::METHOD_NOT_ALLOWED => "Method Not Allowed",
        _ => return res,
    };
    if res.body().size_hint().exact() != Some(0)
        || res.headers().contains_key(http::header::CONTENT_TYPE)
    {
        return res;
    }
    let mut json = error::json_response(res.status(), &serde_json::json!({ "detail": detail }));
    std::mem::swap(res.body_mut(), json.body_mut());
    res.headers_mut().extend(json.headers_mut().drain());
    res.headers_mut().remove(http::header::CONTENT_LENGTH);
    res
}

/// A [`Stack`] in front of an app: a tower service for axum, hyper or [`serve`](crate::serve).
#[derive(Clone)]
pub struct StackService {
    shared: Arc<Shared>,
}

impl fmt::Debug for StackService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackService")
            .field("entries", &self.shared.entries)
            .finish()
    }
}

impl<B> Service<http::Request<B>> for StackService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> ResponseFuture {
        let shared = Arc::clone(&self.shared);
        ResponseFuture(Box::pin(async move {
            Ok(Next::new(&shared).run(req.map(Body::new)).await)
        }))
    }
}

/// The future of one request through a [`StackService`].
pub struct ResponseFuture(BoxFuture<'static, Result<Response, Infallible>>);

impl Future for ResponseFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
