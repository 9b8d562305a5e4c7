//! The two kinds of middleware that wrap the rest of the stack: functions
//! (`async fn(Request, Next)`) and structs that implement [`Middleware`].

use std::future::Future;
use std::marker::PhantomData;

use axum::response::IntoResponse;

use super::boundary;
use super::chain::{Compiled, DynEntry, NextFuture};
use crate::{Next, Request, Response};

/// A middleware written as a struct: one async method, no `Layer`/`Service` boilerplate.
///
/// The options live in the struct; `call` gets the request and the rest of the stack.
///
/// ```
/// use callnext::{Middleware, Next, Request, Response, Stack, TestClient};
///
/// struct AnotherAsyncMiddleware {
///     some_option: String,
/// }
///
/// impl Middleware for AnotherAsyncMiddleware {
///     async fn call(&self, req: Request, next: Next<'_>) -> Response {
///         tracing::info!(option = %self.some_option, "pre-processing");
///         let mut res = next.run(req).await;
///         res.headers_mut().insert(
///             "x-another-middleware",
///             "Processed by class-based middleware".parse().unwrap(),
///         );
///         res
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let stack = Stack::new().middleware(AnotherAsyncMiddleware {
///     some_option: "custom_config_value".into(),
/// });
/// let client = TestClient::new(stack.service(app));
/// let res = client.get("/").await;
/// assert_eq!(res.header("x-another-middleware"), Some("Processed by class-based middleware"));
/// assert_eq!(res.text(), "hi");
/// # });
/// ```
///
/// To return errors with `?` or `Err`, say what `call` returns in the trait's parameter
/// (`R`, [`Response`] unless given): anything that implements [`IntoResponse`], such as
/// `Result<Response, HttpError>`.
///
/// ```
/// use callnext::{HttpError, Middleware, Next, Request, Response, Stack, TestClient};
///
/// struct RequireHeader(&'static str);
///
/// impl Middleware<Result<Response, HttpError>> for RequireHeader {
///     async fn call(&self, req: Request, next: Next<'_>) -> Result<Response, HttpError> {
///         let value = req.headers().get(self.0).ok_or_else(|| HttpError::bad_request("missing header"))?;
///         value.to_str().map_err(|_| HttpError::bad_request("header is not text"))?;
///         Ok(next.run(req).await)
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let client = TestClient::new(Stack::new().middleware(RequireHeader("x-token")).service(app));
/// assert_eq!(client.get("/").await.text(), r#"{"detail":"missing header"}"#);
/// assert_eq!(client.get("/").header("x-token", "t").await.text(), "hi");
/// # });
/// ```
pub trait Middleware<R: IntoResponse = Response>: Send + Sync + 'static {
    /// Handles one request. Call `next.run(req).await` to run the rest of the stack, or return
    /// a response of your own to short-circuit.
    ///
    /// Written as `fn call(..) -> impl Future` instead of `async fn`, the code before the
    /// future is made runs when the entry before this one calls `next.run`: a panic there is
    /// still this middleware's 500, but its time is not this middleware's (it is charged to the
    /// middleware before it, or to nobody after hooks or at the top of the stack). Keep work
    /// inside the future.
    fn call(&self, req: Request, next: Next<'_>) -> impl Future<Output = R> + Send;

    /// What it offers the rest of the system: its kind and place in the order (for the
    /// linter), its stores (for the live page), a flush at shutdown, its metrics. Defaults to
    /// none.
    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new()
    }
}

/// What a function middleware is: `async fn(Request, Next) -> impl IntoResponse`.
///
/// Implemented for every such `async fn`; you never implement it yourself. The output may be a
/// [`Response`], a `Result<Response, HttpError>` (so `?` works) or anything else that
/// implements [`IntoResponse`].
pub trait MiddlewareFn<'a>: Send + Sync + 'static {
    /// What the function returns.
    type Output: IntoResponse;
    /// The future of one call.
    type Future: Future<Output = Self::Output> + Send + 'a;
    /// Calls the function.
    fn call(&'a self, req: Request, next: Next<'a>) -> Self::Future;
}

impl<'a, F, Fut> MiddlewareFn<'a> for F
where
    F: Fn(Request, Next<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'a,
    Fut::Output: IntoResponse,
{
    type Output = Fut::Output;
    type Future = Fut;

    fn call(&'a self, req: Request, next: Next<'a>) -> Fut {
        self(req, next)
    }
}

/// What a function middleware with shared state is: `async fn(&S, Request, Next) -> impl IntoResponse`.
///
/// Implemented for every such `async fn`; see [`Stack::func_with_state`](crate::Stack::func_with_state).
pub trait MiddlewareFnWithState<'a, S: 'a>: Send + Sync + 'static {
    /// What the function returns.
    type Output: IntoResponse;
    /// The future of one call.
    type Future: Future<Output = Self::Output> + Send + 'a;
    /// Calls the function.
    fn call(&'a self, state: &'a S, req: Request, next: Next<'a>) -> Self::Future;
}

impl<'a, S, F, Fut> MiddlewareFnWithState<'a, S> for F
where
    S: 'a,
    F: Fn(&'a S, Request, Next<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'a,
    Fut::Output: IntoResponse,
{
    type Output = Fut::Output;
    type Future = Fut;

    fn call(&'a self, state: &'a S, req: Request, next: Next<'a>) -> Fut {
        self(state, req, next)
    }
}

/// A function middleware in a compiled stack.
pub(crate) struct FnEntry<F>(pub(crate) F);

impl<F> DynEntry for FnEntry<F>
where
    F: for<'a> MiddlewareFn<'a>,
{
    #[inline]
    fn call<'a>(&'a self, req: Request, next: Next<'a>, at: &'a Compiled) -> NextFuture<'a> {
        let (ctx, report) = (&**next.ctx, &*next.chain.report);
        boundary::start(ctx, report, &at.name, at.slot, move || {
            self.0.call(req, next)
        })
    }
}

/// A function middleware with state in a compiled stack.
pub(crate) struct FnWithStateEntry<F, S> {
    pub(crate) f: F,
    pub(crate) state: S,
}

impl<F, S> DynEntry for FnWithStateEntry<F, S>
where
    S: Send + Sync + 'static,
    F: for<'a> MiddlewareFnWithState<'a, S>,
{
    #[inline]
    fn call<'a>(&'a self, req: Request, next: Next<'a>, at: &'a Compiled) -> NextFuture<'a> {
        let (ctx, report) = (&**next.ctx, &*next.chain.report);
        boundary::start(ctx, report, &at.name, at.slot, move || {
            self.f.call(&self.state, req, next)
        })
    }
}

/// A struct middleware in a compiled stack.
pub(crate) struct StructEntry<M, R>(pub(crate) M, pub(crate) PhantomData<fn() -> R>);

impl<M, R> DynEntry for StructEntry<M, R>
where
    M: Middleware<R>,
    R: IntoResponse + 'static,
{
    #[inline]
    fn call<'a>(&'a self, req: Request, next: Next<'a>, at: &'a Compiled) -> NextFuture<'a> {
        let (ctx, report) = (&**next.ctx, &*next.chain.report);
        boundary::start(ctx, report, &at.name, at.slot, move || {
            self.0.call(req, next)
        })
    }
}
