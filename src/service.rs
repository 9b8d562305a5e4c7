//! [`StackService`]: a stack in front of an app, as one tower service. Each request's
//! instrumentation, Server-Timing, metrics and span are set up and reported here.

use std::any::Any;
use std::cell::Cell;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::response::IntoResponse;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, StatusCode};
use tower::{BoxError, Layer, Service, ServiceExt};
use tracing::Instrument;

use crate::instrument::{self, clock, Ctx, RequestCtx, SharedStats};
use crate::metrics::{self as prom, UNMATCHED_ROUTE};
use crate::stack::{Entry, Settings};
use crate::{error, BlockingReport, HttpError, Next, Request, Response};

/// What a request walks: the entries, then the endpoint.
pub(crate) struct Shared {
    pub(crate) entries: Box<[Arc<Entry>]>,
    pub(crate) endpoint: Box<dyn Endpoint>,
    pub(crate) settings: Settings,
    pub(crate) threshold_ticks: u64,
    pub(crate) app_stats: SharedStats,
    /// Per boundary (entries, then the app), when metrics are on.
    pub(crate) poll_histograms: Option<Box<[Arc<prom::Histogram>]>>,
    pub(crate) request_metrics: Option<prom::RequestMetrics>,
    /// Whether a request's context must be shareable (`Arc`): a tower layer in the stack holds
    /// the rest of the stack as an owned service.
    pub(crate) shared_ctx: bool,
}

impl Shared {
    pub(crate) fn build<S, B>(
        entries: &[Arc<Entry>],
        settings: Settings,
        app_stats: SharedStats,
        app: S,
    ) -> Self
    where
        S: Service<Request, Response = http::Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // An axum Router learns to report the route template it matched.
        let app: Box<dyn Any> = Box::new(app);
        let endpoint: Box<dyn Endpoint> = match app.downcast::<axum::Router>() {
            Ok(router) if router.has_routes() => {
                Box::new(ServiceEndpoint::new(router.route_layer(RouteCapture), true))
            }
            Ok(router) => Box::new(ServiceEndpoint::new(*router, false)),
            Err(app) => match app.downcast::<S>() {
                Ok(app) => Box::new(ServiceEndpoint::new(*app, false)),
                Err(_) => unreachable!("the app is an S"),
            },
        };
        let poll_histograms = settings.metrics_path.is_some().then(|| {
            prom::prometheus();
            entries
                .iter()
                .map(|e| e.name.to_string())
                .chain(["app".to_owned()])
                .map(|name| prom::histogram(prom::POLL_SECONDS, vec![("middleware", name)]))
                .collect()
        });
        let request_metrics = settings
            .metrics_path
            .is_some()
            .then(prom::RequestMetrics::new);
        let shared_ctx = entries
            .iter()
            .any(|e| e.kind == crate::MiddlewareKind::Tower);
        Self {
            entries: entries.into(),
            endpoint,
            shared_ctx,
            request_metrics,
            threshold_ticks: instrument::ns_to_ticks(
                u64::try_from(settings.blocking_threshold.as_nanos()).unwrap_or(u64::MAX),
            ),
            settings,
            app_stats,
            poll_histograms,
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .map(|e| &*e.name)
            .chain(std::iter::once("app"))
    }

    fn stats(&self) -> impl Iterator<Item = &SharedStats> {
        self.entries
            .iter()
            .map(|e| &e.stats)
            .chain(std::iter::once(&self.app_stats))
    }

    pub(crate) fn blocking_report(&self) -> BlockingReport {
        BlockingReport::collect(self.names().zip(self.stats().map(|s| &**s)))
    }
}

/// One request through the stack, with its span, instrumentation and metrics.
async fn handle(shared: Arc<Shared>, req: Request) -> Response {
    let settings = &shared.settings;
    if let Some(path) = &settings.metrics_path {
        if req.uri().path() == &**path {
            return metrics_response(req.method());
        }
    }
    let method = req.method().clone();
    // Under axum's `Router::layer`, routing already happened.
    let routed_before = req.extensions().get::<MatchedPath>().cloned();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = tracing::field::Empty,
        status = tracing::field::Empty,
        request_id = tracing::field::Empty,
    );
    // With no subscriber interested in request spans, skip everything that only feeds one.
    let spanned = !span.is_disabled();
    if spanned {
        if let Some(id) = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            span.record("request_id", id);
        }
    }
    let _in_flight = shared
        .request_metrics
        .as_ref()
        .map(prom::RequestMetrics::start);
    let start = clock().raw();
    let ctx = RequestCtx::new(
        settings.instrument,
        shared.entries.len() + 1,
        shared.threshold_ticks,
    );
    let ctx = if shared.shared_ctx {
        Ctx::Shared(Arc::new(ctx))
    } else {
        Ctx::Inline(ctx)
    };
    let next = Next {
        shared: &shared,
        index: 0,
        ctx: &ctx,
    };
    let mut res = if spanned {
        next.run(req).instrument(span.clone()).await
    } else {
        next.run(req).await
    };

    // The stack's own router knows best; a stack under `Router::layer` (or a route of an
    // enclosing router) has only the route matched before it.
    let route = ctx.route().or(routed_before.as_ref());
    let route = route.map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    if spanned {
        span.record("route", route);
        span.record("status", res.status().as_u16());
    }
    if ctx.timed {
        let _enter = spanned.then(|| span.enter());
        report(&shared, &ctx, method.as_str(), route, &mut res);
    }
    if let Some(metrics) = &shared.request_metrics {
        let elapsed = instrument::ticks_to_duration(clock().raw().saturating_sub(start));
        metrics.record(&method, route, res.status(), elapsed);
    }
    res
}

fn report(shared: &Shared, ctx: &RequestCtx, method: &str, route: &str, res: &mut Response) {
    let boundaries = shared.names().zip(shared.stats()).zip(ctx.slots().iter());
    for (i, ((name, stats), slot)) in boundaries.enumerate() {
        if let Some(histograms) = &shared.poll_histograms {
            histograms[i].record(instrument::ticks_to_duration(slot.exclusive.load(Relaxed)));
        }
        let blocking = slot.blocking_polls.load(Relaxed);
        if blocking > 0 {
            let worst = instrument::ticks_to_duration(slot.worst_poll.load(Relaxed));
            stats.record(name, blocking, worst, method, route);
            if shared.settings.metrics_path.is_some() {
                metrics::counter!(prom::BLOCKING_TOTAL, "middleware" => name.to_owned())
                    .increment(blocking);
            }
        }
    }
    let settings = &shared.settings;
    if settings.record_timings || tracing::enabled!(tracing::Level::DEBUG) {
        let timings = instrument::boundary_timings(shared.names(), ctx.slots());
        for b in &timings.boundaries {
            tracing::debug!(
                middleware = %b.name,
                exclusive_us = b.exclusive.as_secs_f64() * 1e6,
                worst_poll_us = b.worst_poll.as_secs_f64() * 1e6,
                wall_excluding_inner_us = b.wall_excluding_inner.as_secs_f64() * 1e6,
                "middleware timing"
            );
        }
        if settings.record_timings {
            res.extensions_mut().insert(timings);
        }
    }
    if settings.server_timing {
        let value = instrument::server_timing(shared.names(), ctx.slots());
        if let Ok(value) = HeaderValue::try_from(value) {
            res.headers_mut().append("server-timing", value);
        }
    }
}

fn metrics_response(method: &http::Method) -> Response {
    if method != http::Method::GET && method != http::Method::HEAD {
        let mut res =
            HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response();
        res.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET,HEAD"));
        return res;
    }
    let mut res = Response::new(Body::from(prom::render()));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

pub(crate) trait Endpoint: Send + Sync + 'static {
    /// Runs the app; the route template it matched, if it reports one, goes into `ctx`.
    fn call<'a>(&'a self, req: Request, ctx: &'a RequestCtx) -> BoxFuture<'a, Response>;
}

struct ServiceEndpoint<S, B> {
    service: S,
    /// Whether the service is a router with [`RouteCapture`] on its routes.
    captures_route: bool,
    _body: PhantomData<fn() -> B>,
}

impl<S, B> ServiceEndpoint<S, B> {
    fn new(service: S, captures_route: bool) -> Self {
        Self {
            service,
            captures_route,
            _body: PhantomData,
        }
    }
}

impl<S, B> Endpoint for ServiceEndpoint<S, B>
where
    S: Service<Request, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn call<'a>(&'a self, req: Request, ctx: &'a RequestCtx) -> BoxFuture<'a, Response> {
        let service = self.service.clone();
        let app = CaptureRoute {
            inner: service.oneshot(req),
            ctx: self.captures_route.then_some(ctx),
        };
        Box::pin(async move {
            match app.await {
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

thread_local! {
    /// The route template [`RouteCaptureService`] saw during the current poll of an endpoint.
    static MATCHED_ROUTE: Cell<Option<MatchedPath>> = const { Cell::new(None) };
}

/// On each route of the app's router: passes the matched route template to the stack
/// (outside the router) through a thread-local that [`CaptureRoute`] empties around each poll,
/// so metrics, logs and blocking reports carry it without an allocation per request.
#[derive(Clone, Copy)]
struct RouteCapture;

impl<S> Layer<S> for RouteCapture {
    type Service = RouteCaptureService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RouteCaptureService(inner)
    }
}

#[derive(Clone)]
struct RouteCaptureService<S>(S);

impl<S> Service<Request> for RouteCaptureService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Some(route) = req.extensions().get::<MatchedPath>() {
            MATCHED_ROUTE.set(Some(route.clone()));
        }
        self.0.call(req)
    }
}

pin_project_lite::pin_project! {
    /// The router's future; the route its [`RouteCaptureService`] reports during a poll goes
    /// into the request's context.
    struct CaptureRoute<'a, F> {
        #[pin]
        inner: F,
        ctx: Option<&'a RequestCtx>,
    }
}

impl<F: Future> Future for CaptureRoute<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(ctx) = *this.ctx else {
            return this.inner.poll(cx);
        };
        // Whatever an enclosing endpoint's router reported is put back afterwards, even if the
        // poll unwinds, so nested stacks each see their own route.
        let outer = RestoreRoute(MATCHED_ROUTE.take());
        let poll = this.inner.poll(cx);
        if let Some(route) = MATCHED_ROUTE.take() {
            ctx.set_route(route);
            *this.ctx = None;
        }
        drop(outer);
        poll
    }
}

struct RestoreRoute(Option<MatchedPath>);

impl Drop for RestoreRoute {
    fn drop(&mut self) {
        MATCHED_ROUTE.set(self.0.take());
    }
}

/// A [`Stack`](crate::Stack) in front of an app: a tower service for axum, hyper or
/// [`serve`](crate::serve).
#[derive(Clone)]
pub struct StackService {
    pub(crate) shared: Arc<Shared>,
}

impl StackService {
    /// The blocking events this service's stack has seen (shared with the [`Stack`](crate::Stack)
    /// it came from and every other service built from it).
    pub fn blocking_report(&self) -> BlockingReport {
        self.shared.blocking_report()
    }
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
        ResponseFuture(Box::pin(handle(shared, req.map(Body::new))))
    }
}

/// The future of one request through a [`StackService`].
pub struct ResponseFuture(BoxFuture<'static, Response>);

impl Future for ResponseFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one allocation every request makes for its future stays within the sizes glibc's
    /// per-thread cache serves (up to 1032 bytes); past it each request takes malloc's slow path.
    #[test]
    fn request_future_fits_the_allocator_cache() {
        let service = crate::Stack::new().service(axum::Router::new());
        let future = handle(Arc::clone(&service.shared), Request::default());
        let size = std::mem::size_of_val(&future);
        assert!(size <= 1032, "a request's future is {size} bytes");
    }
}
