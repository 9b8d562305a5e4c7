//! Where ordering happens: [`Stack::push`] and its shortcuts append (registration order is
//! execution order), [`Stack::insert_before`] and [`Stack::insert_after`] place an entry by
//! name, and names are kept unique.

use std::borrow::Cow;
use std::sync::Arc;

use axum::response::IntoResponse;
use tower::Layer;

use super::builder::Stack;
use super::entry::Entry;
use super::hook::{Hook, HookOutcome};
use super::middleware::{Middleware, MiddlewareFn, MiddlewareFnWithState};
use super::tower::NextService;
use super::HttpService;
use crate::error::{ConfigError, ConfigErrorKind};
use crate::{Request, Response};

/// Names callnext gives its own boundaries.
const RESERVED: [&str; 2] = ["app", "body"];

impl Stack {
    /// Why `name` cannot be added, if it cannot.
    fn check_name(&self, name: &str) -> Result<(), ConfigError> {
        if name.is_empty() || RESERVED.contains(&name) {
            return Err(ConfigError::new(
                ConfigErrorKind::ReservedName,
                format!(
                    "a middleware cannot be named `{name}`: callnext names its own boundaries `app` and `body`, and names cannot be empty"
                ),
            ));
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(ConfigError::new(
                ConfigErrorKind::DuplicateName,
                format!(
                    "two middlewares are named `{name}`; give one another name with `Entry::named`"
                ),
            ));
        }
        Ok(())
    }

    /// Appends an entry (it runs after every entry already in the stack). A name the stack
    /// already has is an error when the stack is built.
    #[must_use]
    pub fn push(mut self, entry: Entry) -> Self {
        if let Err(err) = self.check_name(&entry.name) {
            self.fail(err);
        }
        self.entries.push(entry);
        self.identity = Arc::new(());
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
    /// assert_eq!(client.get("/").header("x-api-key", "k").await.status(), 200);
    /// # });
    /// ```
    ///
    /// # Closures
    ///
    /// A closure cannot be a function middleware: its future borrows the [`Next`] it is given
    /// (`Next<'a>` → a future that lives for `'a`), and Rust cannot yet infer that lifetime
    /// for a closure's return type (`lifetime may not live long enough`). Use one of these
    /// instead, each as cheap as the other:
    ///
    /// - an `async fn` item, as above;
    /// - [`Stack::func_with_state`] for what a closure would capture (configuration, a client);
    /// - a struct implementing [`Middleware`], when the options deserve a type;
    /// - [`Stack::on_request`] / [`Stack::on_response`], which do take closures, for work that
    ///   does not need to wrap the rest of the stack.
    ///
    /// [`Next`]: crate::Next
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
    pub fn middleware<M, R>(self, m: M) -> Self
    where
        M: Middleware<R>,
        R: IntoResponse + 'static,
    {
        self.push(Entry::middleware(m))
    }

    /// Appends a hook (see [`Hook`]).
    #[must_use]
    pub fn hook<H: Hook>(self, hook: H) -> Self {
        self.push(Entry::hook(hook))
    }

    /// Appends a synchronous hook on the request, from a closure, under `name`.
    ///
    /// ```
    /// use callnext::{HttpError, Stack, TestClient};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    /// let stack = Stack::new()
    ///     .on_response("powered_by", |res| {
    ///         res.headers_mut().insert("x-powered-by", "callnext".parse().unwrap());
    ///     })
    ///     .on_request("maintenance", |req| {
    ///         if req.uri().path() != "/health" {
    ///             return Err(HttpError::new(http::StatusCode::SERVICE_UNAVAILABLE, "Down for maintenance"));
    ///         }
    ///         Ok(())
    ///     });
    /// let res = TestClient::new(stack.service(app)).get("/").await;
    /// assert_eq!(res.status(), 503);
    /// // The hook before the one that answered still saw the response.
    /// assert_eq!(res.header("x-powered-by"), Some("callnext"));
    /// # });
    /// ```
    #[must_use]
    pub fn on_request<F, R>(self, name: impl Into<Cow<'static, str>>, f: F) -> Self
    where
        F: Fn(&mut Request) -> R + Send + Sync + 'static,
        R: HookOutcome,
    {
        self.push(Entry::on_request(name, f))
    }

    /// Appends a synchronous hook on the response, from a closure, under `name`; see
    /// [`Stack::on_request`].
    #[must_use]
    pub fn on_response<F, R>(self, name: impl Into<Cow<'static, str>>, f: F) -> Self
    where
        F: Fn(&mut Response) -> R + Send + Sync + 'static,
        R: HookOutcome,
    {
        self.push(Entry::on_response(name, f))
    }

    /// Appends a tower layer under `name`, e.g. tower-http's `CorsLayer`; see [`Entry::layer`].
    ///
    /// ```
    /// use callnext::{Stack, TestClient};
    /// use http::{header, HeaderValue, Method};
    /// use tower_http::cors::CorsLayer;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cors = CorsLayer::new()
    ///     .allow_origin(HeaderValue::from_static("https://app.example"))
    ///     .allow_methods([Method::GET]);
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    /// let client = TestClient::new(Stack::new().layer("cors", cors).service(app));
    ///
    /// let res = client.get("/").header(header::ORIGIN, "https://app.example").await;
    /// assert_eq!(res.header("access-control-allow-origin"), Some("https://app.example"));
    /// # });
    /// ```
    #[must_use]
    pub fn layer<L>(self, name: impl Into<Cow<'static, str>>, layer: L) -> Self
    where
        L: Layer<NextService> + Send + Sync + 'static,
        L::Service: HttpService,
    {
        self.push(Entry::layer(name, layer))
    }

    /// Inserts `entry` just before the entry named `anchor` (so it runs before it).
    ///
    /// ```
    /// use callnext::{Entry, Next, Request, Response, Stack};
    ///
    /// async fn auth(req: Request, next: Next<'_>) -> Response { next.run(req).await }
    /// async fn request_id(req: Request, next: Next<'_>) -> Response { next.run(req).await }
    ///
    /// let stack = Stack::new().func(auth).insert_before("auth", Entry::func(request_id)).unwrap();
    /// assert_eq!(stack.to_string(), "0 request_id (function)\n1 auth (function)\n");
    ///
    /// let err = Stack::new().insert_before("nope", Entry::func(auth)).unwrap_err();
    /// assert_eq!(err.to_string(), "no middleware named `nope` in the stack (it has: none)");
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::UnknownMiddleware`] when no entry is named `anchor`, and
    /// [`ConfigErrorKind::DuplicateName`] (or [`ConfigErrorKind::ReservedName`]) when `entry`'s
    /// name cannot be added.
    pub fn insert_before(self, anchor: &str, entry: Entry) -> Result<Self, ConfigError> {
        let at = self.position(anchor)?;
        self.insert_at(at, entry)
    }

    /// Inserts `entry` just after the entry named `anchor` (so it runs after it).
    ///
    /// # Errors
    ///
    /// As [`Stack::insert_before`].
    pub fn insert_after(self, anchor: &str, entry: Entry) -> Result<Self, ConfigError> {
        let at = self.position(anchor)? + 1;
        self.insert_at(at, entry)
    }

    fn insert_at(mut self, at: usize, entry: Entry) -> Result<Self, ConfigError> {
        self.check_name(&entry.name)?;
        self.entries.insert(at, entry);
        self.identity = Arc::new(());
        Ok(self)
    }

    fn position(&self, name: &str) -> Result<usize, ConfigError> {
        let mut found = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name == name);
        match (found.next(), found.count()) {
            (Some((i, _)), 0) => Ok(i),
            (Some(_), more) => Err(ConfigError::new(
                ConfigErrorKind::AmbiguousMiddleware,
                format!(
                    "middleware name `{name}` is ambiguous: {} entries carry it; give them distinct names",
                    more + 1
                ),
            )),
            (None, _) => {
                let known: Vec<_> = self.entries.iter().map(|e| &*e.name).collect();
                Err(ConfigError::new(
                    ConfigErrorKind::UnknownMiddleware,
                    format!(
                        "no middleware named `{name}` in the stack (it has: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ))
            }
        }
    }
}
