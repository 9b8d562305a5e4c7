//! [`StackService`]: a built stack in front of an app, as one tower service, and the driver of
//! each request: its context, span, metrics and report.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::MatchedPath;
use bytes::Bytes;
use tower::{BoxError, Service};

use super::chain::Chain;
use super::finish::{after_body, without_forbidden_body};
use super::future::ResponseFuture;
use super::next::Next;
use crate::instrument::body::TimedBody;
use crate::instrument::report::StackReport;
use crate::instrument::request::{Ctx, RequestCtx};
use crate::instrument::BlockingStats;
use crate::{BlockingReport, Request, Response};

/// What a [`StackService`] shares between its clones.
pub(crate) struct StackInner {
    pub(crate) chain: Arc<Chain>,
    /// Whether a request's context must be shareable (`Arc`): a tower layer in the stack holds
    /// the rest of the stack as an owned service.
    pub(crate) shared_ctx: bool,
    /// Whose forwarding headers set a request's [`ClientIp`](crate::ClientIp).
    pub(crate) trusted_proxies: Arc<crate::TrustedProxies>,
    /// Where the responses' background tasks are counted.
    pub(crate) background: Arc<crate::background::Tracker>,
    /// Debug mode: a panic's 500 as a page for people (see `finish::debug_page`).
    pub(crate) debug: bool,
    /// Traces exported over OTLP.
    #[cfg(feature = "otel")]
    pub(crate) telemetry: Option<crate::telemetry::Telemetry>,
}

/// Inserts the connection's `ConnectInfo` into a request's extensions (when served by
/// `axum::serve`).
type ConnectInfoFn = Arc<dyn Fn(&mut http::Extensions) + Send + Sync>;

/// A [`Stack`](crate::Stack) in front of an app: a tower service for axum, hyper or
/// [`serve`](crate::serve).
///
/// Serve it with callnext's server, with `axum::serve` directly (requests then carry axum's
/// `ConnectInfo<SocketAddr>`), or put the [`Stack`](crate::Stack) into an axum app with
/// `Router::layer`:
///
/// ```no_run
/// use axum::{extract::ConnectInfo, routing::get, Router};
/// use callnext::Stack;
/// use std::net::SocketAddr;
///
/// # async fn run() -> std::io::Result<()> {
/// let app = Router::new().route(
///     "/",
///     get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
/// );
/// let service = Stack::new().service(app);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// axum::serve(listener, service).await
/// # }
/// ```
#[derive(Clone)]
pub struct StackService {
    inner: Arc<StackInner>,
    connect_info: Option<ConnectInfoFn>,
}

impl StackService {
    pub(crate) fn new(inner: StackInner) -> Self {
        Self {
            inner: Arc::new(inner),
            connect_info: None,
        }
    }

    fn report(&self) -> &StackReport {
        &self.inner.chain.report
    }

    /// The blocking events this service's stack has seen (shared with the
    /// [`Stack`](crate::Stack) it came from and every other service built from it).
    pub fn blocking_report(&self) -> BlockingReport {
        let report = self.report();
        BlockingReport::collect(
            report
                .names
                .iter()
                .map(|n| &**n)
                .zip(report.stats.iter().map(|s| &**s as &BlockingStats)),
        )
    }
}

impl fmt::Debug for StackService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackService")
            .field("boundaries", &self.report().names)
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

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> ResponseFuture {
        self.call_shared(req)
    }
}

impl StackService {
    /// [`Service::call`] on a shared service: what a request needs of it is behind its `Arc`.
    /// Inlined into `call`, so the request is not moved through one more frame.
    #[inline]
    pub(crate) fn call_shared<B>(&self, req: http::Request<B>) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut req = req.map(Body::new);
        #[cfg(feature = "server")]
        crate::serve::body_deadline::apply(&mut req);
        if let Some(insert) = &self.connect_info {
            insert(req.extensions_mut());
        }
        crate::client_ip::set_client_ip(&mut req, &self.inner.trusted_proxies);
        ResponseFuture(Box::pin(drive(Arc::clone(&self.inner), req)))
    }
}

/// `axum::serve(listener, service)`: each connection gets this service, with the peer address
/// as axum's `ConnectInfo` on every request.
impl<L> Service<axum::serve::IncomingStream<'_, L>> for StackService
where
    L: axum::serve::Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    type Response = Self;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        let addr = stream.remote_addr().clone();
        let insert: ConnectInfoFn = Arc::new(move |extensions: &mut http::Extensions| {
            if extensions
                .get::<axum::extract::ConnectInfo<L::Addr>>()
                .is_none()
            {
                extensions.insert(axum::extract::ConnectInfo(addr.clone()));
            }
        });
        std::future::ready(Ok(Self {
            inner: Arc::clone(&self.inner),
            connect_info: Some(insert),
        }))
    }
}

/// Publishes a request's blocking events if it is dropped before it finishes.
///
/// It is also counted in the request metrics, with nginx's status for a request the client
/// closed before it was answered, 499.
struct Unfinished<'a> {
    report: &'a StackReport,
    ctx: &'a RequestCtx,
    span: &'a tracing::Span,
    /// When the request began, in clock ticks (0 when neither metrics nor the live page
    /// need it).
    start: u64,
    armed: bool,
    /// The request's URI while the live page records it.
    live: Option<Box<http::Uri>>,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _enter = self.span.enter();
        if self.ctx.timed {
            self.report.abandoned(self.ctx);
        }
        // One clock read for the live page and the metrics (a start of 0: neither needs it).
        let end = if self.start == 0 {
            0
        } else {
            crate::clock::ticks::now()
        };
        if let (Some(uri), Some(live)) = (self.live.take(), &self.report.live) {
            let request = crate::admin::live::Started {
                start: self.start,
                end,
                uri: &uri,
            };
            live.abandoned(&request, self.ctx, &self.report.spans);
        }
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = &self.report.metrics {
            let elapsed = end.saturating_sub(self.start);
            let closed = http::StatusCode::from_u16(499).unwrap_or(http::StatusCode::BAD_REQUEST);
            let route = self.ctx.route_label();
            metrics
                .requests
                .record(&self.ctx.method, &route, closed, elapsed);
        }
    }
}

/// One request through the stack, with its span, instrumentation and metrics.
///
/// Not an `async fn`, which would keep the request twice in the future (the argument and the
/// local it is moved into).
#[allow(clippy::manual_async_fn)] // see above
fn drive(inner: Arc<StackInner>, req: Request) -> impl Future<Output = Response> + Send {
    async move {
        #[cfg(feature = "otel")]
        let mut req = req;
        #[cfg(feature = "otel")]
        let trace = inner
            .telemetry
            .as_ref()
            .map(|t| t.start(&mut req, &inner.trusted_proxies));
        let report: &StackReport = &inner.chain.report;
        let method = req.method().clone();
        let page = inner
            .debug
            .then(|| super::finish::Page::wanted(req.headers()));
        // With no subscriber, or none listening at INFO, no span at all (making a disabled one
        // is not free).
        let span = if tracing::dispatcher::has_been_set()
            && tracing::level_enabled!(tracing::Level::INFO)
        {
            tracing::info_span!(
                "request",
                // Every log line of the request carries it: bounded as any request value.
                method = %crate::Printable::new(method.as_str()),
                route = tracing::field::Empty,
                status = tracing::field::Empty,
                request_id = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        // With no subscriber interested in request spans, skip everything that only feeds one.
        let spanned = !span.is_disabled();
        #[cfg(feature = "otel")]
        if spanned {
            if let Some(context) = req.extensions().get::<crate::telemetry::TraceContext>() {
                span.record("trace_id", context.trace_id());
            }
        }
        #[cfg(feature = "prometheus")]
        let _in_flight = report.metrics.as_ref().map(|m| m.requests.start());
        #[cfg(feature = "prometheus")]
        let timed_from_start = report.metrics.is_some() || report.live.is_some();
        #[cfg(not(feature = "prometheus"))]
        let timed_from_start = report.live.is_some();
        let start = if timed_from_start {
            crate::clock::ticks::now()
        } else {
            0
        };
        // Under axum's `Router::layer`, routing already happened.
        let before = req.extensions().get::<MatchedPath>().cloned();
        let ctx = RequestCtx::new(
            report.timed,
            report.ctx_boundaries(),
            report.threshold,
            method,
            before,
        );
        let ctx = if inner.shared_ctx {
            Ctx::Shared(Arc::new(ctx))
        } else {
            Ctx::Inline(ctx)
        };
        let mut unfinished = Unfinished {
            report,
            ctx: &ctx,
            span: &span,
            start,
            armed: true,
            live: report.live.as_deref().and_then(|live| live.begin(&req)),
        };
        let next = Next {
            chain: &inner.chain,
            index: 0,
            ctx: &ctx,
        };
        // Observers of the response registered while the stack runs are collected here.
        let mut observers = crate::battery::Chain::default();
        let mut res = crate::battery::Collecting::new(
            next.start(req),
            spanned.then_some(&span),
            &mut observers,
        )
        .await;
        unfinished.armed = false;
        let live_uri = unfinished.live.take();
        let recorded = live_uri.is_some();
        without_forbidden_body(&ctx.method, &mut res);
        if let Some(page) = page {
            page.debug(&mut res);
        }
        if let Some(tasks) = res.extensions_mut().remove::<crate::BackgroundTasks>() {
            after_body(&res, tasks, &inner.background, &mut observers);
        }
        // One body wrapper for everything that waits for the end of the response.
        crate::battery::apply_observers(&mut res, observers);

        let route_label = ctx.route_label();
        let route: &str = &route_label;
        if spanned {
            span.record("route", route);
            span.record("status", res.status().as_u16());
        }
        if ctx.timed {
            let _enter = spanned.then(|| span.enter());
            report.finished(&ctx, &mut res);
            // A body of known length (a buffered JSON answer) hands over bytes already made; a
            // stream (compression, SSE, a transform) does its work in its polls, so it is timed.
            if http_body::Body::size_hint(res.body()).exact().is_none() {
                let report = Arc::clone(&inner.chain.report);
                let method = ctx.method.clone();
                res = res.map(|body| TimedBody::wrap(body, report, method, route, recorded));
            }
        }
        // The response head is ready: one clock read for the live page and the metrics.
        let end = if unfinished.start == 0 {
            0
        } else {
            crate::clock::ticks::now()
        };
        if let (Some(uri), Some(live)) = (live_uri, &report.live) {
            let request = crate::admin::live::Started {
                start: unfinished.start,
                end,
                uri: &uri,
            };
            live.finished(&request, &ctx, &report.spans, route, &res);
        }
        #[cfg(feature = "otel")]
        if let (Some(telemetry), Some(trace)) = (&inner.telemetry, trace) {
            let timings = ctx.timed.then(|| crate::telemetry::Timings {
                names: &report.names,
                slots: ctx.slots(),
                spans: &report.spans,
                threshold: report.threshold,
            });
            telemetry.finish(trace, route, res.status(), timings, end);
        }
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = &report.metrics {
            let elapsed = end.saturating_sub(unfinished.start);
            metrics
                .requests
                .record(&ctx.method, route, res.status(), elapsed);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one allocation every request makes for its own future stays within the sizes
    /// glibc's per-thread cache serves (up to 1032 bytes); past it each request takes malloc's
    /// slow path.
    #[test]
    fn request_future_fits_the_allocator_cache() {
        let service = crate::Stack::new().service(axum::Router::new());
        let future = drive(Arc::clone(&service.inner), Request::default());
        let size = std::mem::size_of_val(&future);
        assert!(size <= 1032, "a request's future is {size} bytes");
    }
}
