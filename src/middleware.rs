//! The three kinds of middleware a [`Stack`](crate::Stack) holds: functions, structs that
//! implement [`Middleware`], and tower layers.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::instrument::{Ctx, RequestCtx};
use crate::service::Shared;
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
pub trait Middleware: Send + Sync + 'static {
    /// Handles one request. Call `next.run(req).await` to run the rest of the stack, or return
    /// a response of your own to short-circuit.
    fn call(&self, req: Request, next: Next<'_>) -> impl Future<Output = Response> + Send;
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

/// The object-safe form every stack entry is stored as.
pub(crate) trait DynMiddleware: Send + Sync + 'static {
    fn call<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Response>;
}

pub(crate) struct FnEntry<F>(pub(crate) F);

impl<F> DynMiddleware for FnEntry<F>
where
    F: for<'a> MiddlewareFn<'a>,
{
    fn call<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Response> {
        Box::pin(self.0.call(req, next).map(IntoResponse::into_response))
    }
}

pub(crate) struct FnWithStateEntry<F, S> {
    pub(crate) f: F,
    pub(crate) state: S,
}

impl<F, S> DynMiddleware for FnWithStateEntry<F, S>
where
    S: Send + Sync + 'static,
    F: for<'a> MiddlewareFnWithState<'a, S>,
{
    fn call<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Response> {
        Box::pin(
            self.f
                .call(&self.state, req, next)
                .map(IntoResponse::into_response),
        )
    }
}

pub(crate) struct StructEntry<M>(pub(crate) M);

impl<M: Middleware> DynMiddleware for StructEntry<M> {
    fn call<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Response> {
        Box::pin(self.0.call(req, next))
    }
}

/// A tower [`Layer`] placed in a stack. Its service is built per request around a [`NextService`]
/// that continues with the rest of the stack.
pub(crate) struct TowerEntry<L, B> {
    pub(crate) layer: L,
    pub(crate) _body: PhantomData<fn() -> B>,
}

impl<L, B> DynMiddleware for TowerEntry<L, B>
where
    L: Layer<NextService> + Send + Sync + 'static,
    L::Service: Service<Request, Response = http::Response<B>> + Send + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
    <L::Service as Service<Request>>::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn call<'a>(&'a self, req: Request, next: Next<'a>) -> BoxFuture<'a, Response> {
        let ctx = match next.ctx {
            Ctx::Shared(ctx) => Arc::clone(ctx),
            // Stacks with tower entries keep their contexts behind an `Arc` (see `Shared::build`).
            Ctx::Inline(ctx) => Arc::new(RequestCtx::new(false, 0, ctx.threshold_ticks)),
        };
        let service = self.layer.layer(NextService {
            shared: Arc::clone(next.shared),
            index: next.index,
            ctx,
        });
        Box::pin(async move {
            match service.oneshot(req).await {
                Ok(res) => res.map(Body::new),
                Err(err) => {
                    let err: BoxError = err.into();
                    tracing::error!(error = %err, "tower layer failed; answered 500");
                    crate::HttpError::internal().into_response()
                }
            }
        })
    }
}

/// The rest of a stack as a tower [`Service`]: what a tower layer placed in a stack wraps.
///
/// It is `Clone` and `'static`, so layers that need an owned inner service work too.
#[derive(Clone)]
pub struct NextService {
    shared: Arc<Shared>,
    index: usize,
    ctx: Arc<RequestCtx>,
}

impl fmt::Debug for NextService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NextService")
            .field("index", &self.index)
            .finish()
    }
}

impl<B> Service<http::Request<B>> for NextService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Response, std::convert::Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let index = self.index;
        let ctx = Ctx::Shared(Arc::clone(&self.ctx));
        Box::pin(async move {
            let next = Next {
                shared: &shared,
                index,
                ctx: &ctx,
            };
            Ok(next.run(req.map(Body::new)).await)
        })
    }
}
