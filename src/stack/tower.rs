//! Tower layers in a stack: each layer's service is built once per stack service, around a
//! [`NextService`] that continues with the rest of the stack, and cloned per request as axum
//! does.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::StatusCode;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::boundary;
use super::chain::{Chain, Compiled, DynEntry, NextFuture};
use super::HttpService;
use crate::error::internal_error;
use crate::instrument::request::{Ctx, RequestCtx};
use crate::{HttpError, Next, Request, Response};

/// Builds a tower entry's service around the rest of the stack.
pub(crate) trait BuildTower: Send + Sync + 'static {
    fn build(&self, rest: NextService) -> Arc<dyn DynEntry>;
}

pub(crate) struct TowerDef<L> {
    pub(crate) layer: L,
}

impl<L> BuildTower for TowerDef<L>
where
    L: Layer<NextService> + Send + Sync + 'static,
    L::Service: HttpService,
{
    fn build(&self, rest: NextService) -> Arc<dyn DynEntry> {
        Arc::new(TowerEntry {
            service: self.layer.layer(rest),
        })
    }
}

/// A tower layer's service in a compiled stack.
struct TowerEntry<S> {
    service: S,
}

/// The request's context, carried to the [`NextService`] inside the layer.
#[derive(Clone)]
struct TowerCtx(Arc<RequestCtx>);

impl<S: HttpService> DynEntry for TowerEntry<S> {
    fn call<'a>(&'a self, mut req: Request, next: Next<'a>, at: &'a Compiled) -> NextFuture<'a> {
        let (ctx, report) = (&**next.ctx, &*next.chain.report);
        let shared = match next.ctx {
            Ctx::Shared(ctx) => Arc::clone(ctx),
            // Stacks with tower entries keep their contexts behind an `Arc`; this is a fallback.
            Ctx::Inline(ctx) => Arc::new(RequestCtx::new(
                false,
                0,
                u64::MAX,
                ctx.method.clone(),
                None,
            )),
        };
        let name: &'a str = &at.name;
        // `oneshot` calls the service on its first poll, so the work a tower service does in
        // `call` (tower-http's CORS answers a preflight there) is inside the boundary: timed as
        // the layer's, its panics the layer's.
        boundary::start(ctx, report, name, at.slot, move || {
            req.extensions_mut().insert(TowerCtx(shared));
            self.service
                .clone()
                .oneshot(req)
                .map(move |result| match result {
                    Ok(res) => res.map(Body::new),
                    Err(err) => tower_error(name, err.into()),
                })
        })
    }
}

/// A tower layer's error as a response: timeouts and load shedding as what they are, anything
/// else as a 500.
fn tower_error(name: &str, err: BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        tracing::warn!(middleware = name, "tower layer timed out; answered 504");
        return HttpError::new(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout").into_response();
    }
    if err.is::<tower::load_shed::error::Overloaded>() {
        tracing::warn!(
            middleware = name,
            "tower layer shed the request; answered 503"
        );
        return HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            .into_response();
    }
    tracing::error!(middleware = name, error = %err, "tower layer failed; answered 500");
    internal_error()
}

/// The rest of a stack as a tower [`Service`]: what a tower layer placed in a stack wraps.
///
/// It is `Clone` and `'static`, so layers that need an owned inner service work too. A stack
/// builds each layer's service once, around one `NextService`, and clones it per request.
#[derive(Clone)]
pub struct NextService {
    chain: Arc<Chain>,
}

impl NextService {
    pub(crate) fn new(chain: Arc<Chain>) -> Self {
        Self { chain }
    }
}

impl fmt::Debug for NextService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NextService")
            .field("entries", &self.chain.entries.len())
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
        let chain = Arc::clone(&self.chain);
        let mut req = req.map(Body::new);
        let ctx = match req.extensions_mut().remove::<TowerCtx>() {
            Some(TowerCtx(ctx)) => ctx,
            // A request the layer made itself (a retry, say): served, just not timed.
            None => {
                tracing::debug!("a tower layer passed on a request of its own; the rest of the stack runs untimed for it");
                Arc::new(RequestCtx::new(
                    false,
                    0,
                    u64::MAX,
                    req.method().clone(),
                    None,
                ))
            }
        };
        Box::pin(async move {
            let ctx = Ctx::Shared(ctx);
            let next = Next {
                chain: &chain,
                index: 0,
                ctx: &ctx,
            };
            Ok(next.start(req).await)
        })
    }
}
