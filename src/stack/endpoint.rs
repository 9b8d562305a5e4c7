//! The app at the end of the stack: its boundary (`app`), the route template its router
//! matched, and FastAPI's JSON bodies for the router's 404 and 405.

use std::any::Any;
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::MatchedPath;
use futures_util::FutureExt;
use http::StatusCode;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::boundary;
use super::chain::NextFuture;
use super::{HttpService, ResponseBody};
use crate::error::internal_error;
use crate::instrument::report::StackReport;
use crate::instrument::request::RequestCtx;
use crate::{Request, Response};

/// The app, type-erased.
pub(crate) trait Endpoint: Send + Sync + 'static {
    /// Runs the app; the route template it matched, if it reports one, goes into `ctx`.
    fn call<'a>(
        &'a self,
        req: Request,
        ctx: &'a RequestCtx,
        report: &'a StackReport,
    ) -> NextFuture<'a>;
}

/// Wraps `app` as the endpoint of a stack whose app boundary is `slot`. An axum `Router` with
/// routes learns to report the route template it matched; the second value says whether the
/// app reports routes.
/// How the app's answers are finished.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppOptions {
    /// FastAPI's JSON bodies on the router's bare 404/405.
    pub(crate) fastapi_bodies: bool,
    /// The app's plain-text error answers (axum's rejections) as callnext's JSON errors.
    pub(crate) json_rejections: bool,
    /// Put the matched route template (`MatchedPath`) on the response, for an access log.
    pub(crate) route_on_response: bool,
}

pub(crate) fn endpoint<S: HttpService>(
    app: S,
    slot: usize,
    fastapi_bodies: AppOptions,
) -> (Box<dyn Endpoint>, bool) {
    let app: Box<dyn Any> = Box::new(app);
    match app.downcast::<axum::Router>() {
        Ok(router) => {
            let reports = router.has_routes();
            let router = if reports {
                router.route_layer(RouteCapture)
            } else {
                *router
            };
            let endpoint = RouterEndpoint {
                router,
                slot,
                fastapi_bodies,
            };
            (Box::new(endpoint), reports)
        }
        Err(app) => match app.downcast::<S>() {
            Ok(app) => (
                Box::new(ServiceEndpoint::new(*app, slot, fastapi_bodies)),
                false,
            ),
            Err(_) => unreachable!("the app is an S"),
        },
    }
}

struct ServiceEndpoint<S> {
    service: S,
    slot: usize,
    fastapi_bodies: AppOptions,
}

impl<S> ServiceEndpoint<S> {
    fn new(service: S, slot: usize, fastapi_bodies: AppOptions) -> Self {
        Self {
            service,
            slot,
            fastapi_bodies,
        }
    }
}

impl<S: HttpService> Endpoint for ServiceEndpoint<S> {
    #[inline]
    fn call<'a>(
        &'a self,
        req: Request,
        ctx: &'a RequestCtx,
        report: &'a StackReport,
    ) -> NextFuture<'a> {
        let fastapi_bodies = self.fastapi_bodies;
        boundary::start(ctx, report, "app", self.slot, move || {
            CaptureRoute {
                inner: self.service.clone().oneshot(req),
                ctx: Some(ctx),
            }
            .map(move |result| app_response(result, fastapi_bodies, ctx))
        })
    }
}

/// An axum `Router`: called without a `poll_ready` round, since a router is always ready.
struct RouterEndpoint {
    router: axum::Router,
    slot: usize,
    fastapi_bodies: AppOptions,
}

impl Endpoint for RouterEndpoint {
    #[inline]
    fn call<'a>(
        &'a self,
        req: Request,
        ctx: &'a RequestCtx,
        report: &'a StackReport,
    ) -> NextFuture<'a> {
        let fastapi_bodies = self.fastapi_bodies;
        boundary::start(ctx, report, "app", self.slot, move || {
            CaptureRoute {
                inner: Service::<Request>::call(&mut self.router.clone(), req),
                ctx: Some(ctx),
            }
            .map(move |result| {
                let Ok(mut res) = result;
                finish(&mut res, fastapi_bodies, ctx);
                res
            })
        })
    }
}

/// The app's answer as the stack's response; an app's error is a 500.
fn app_response<B: ResponseBody, E: Into<BoxError>>(
    result: Result<http::Response<B>, E>,
    options: AppOptions,
    ctx: &RequestCtx,
) -> Response {
    match result {
        Ok(res) => {
            let mut res = res.map(Body::new);
            finish(&mut res, options, ctx);
            res
        }
        Err(err) => {
            let err: BoxError = err.into();
            tracing::error!(error = %err, "app service failed; answered 500");
            internal_error()
        }
    }
}

#[inline]
fn finish(res: &mut Response, options: AppOptions, ctx: &RequestCtx) {
    if options.fastapi_bodies {
        fastapi_status_body(res);
    }
    if options.json_rejections && (res.status().is_client_error() || res.status().is_server_error())
    {
        json_rejection(res);
    }
    if options.route_on_response {
        if let Some(route) = ctx.route() {
            res.extensions_mut().insert(route);
        }
    }
}

/// Gives the router's bare 404/405 answers FastAPI's JSON bodies.
#[inline]
fn fastapi_status_body(res: &mut Response) {
    if matches!(
        res.status(),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) {
        fastapi_error_body(res);
    }
}

#[cold]
fn fastapi_error_body(res: &mut Response) {
    use http_body::Body as _;
    let detail = if res.status() == StatusCode::NOT_FOUND {
        "Not Found"
    } else {
        "Method Not Allowed"
    };
    if res.body().size_hint().exact() != Some(0)
        || res.headers().contains_key(http::header::CONTENT_TYPE)
    {
        return;
    }
    // As an HttpError, so exception handlers and outer middlewares see it like any other.
    let mut json =
        axum::response::IntoResponse::into_response(crate::HttpError::new(res.status(), detail));
    std::mem::swap(res.body_mut(), json.body_mut());
    res.headers_mut().extend(json.headers_mut().drain());
    res.headers_mut().remove(http::header::CONTENT_LENGTH);
    res.extensions_mut()
        .extend(std::mem::take(json.extensions_mut()));
}

/// The longest plain-text error body turned into JSON (axum's rejections are one line).
const MAX_REJECTION_TEXT: u64 = 8 * 1024;

/// An error answered in plain text of known, small size (axum's extractor rejections,
/// `Missing request extension`, an app's own `(StatusCode, "text")`) becomes callnext's JSON
/// error with the same status: `{"detail": "<the text>"}` for a 4xx; a 5xx says only
/// `Internal Server Error` (its text is logged, never sent). It is made an `HttpError`, so
/// exception handlers and outer middlewares see it as any other.
#[cold]
fn json_rejection(res: &mut Response) {
    use http_body::Body as _;
    let plain = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/plain")
        });
    let small = res
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_REJECTION_TEXT);
    if !plain || !small {
        return;
    }
    let Some(text) = ready_text(res.body_mut()) else {
        return;
    };
    let status = res.status();
    let err = if status.is_server_error() {
        tracing::error!(status = status.as_u16(), error = %text, "app answered an error in plain text");
        crate::HttpError::new(status, "Internal Server Error")
    } else {
        tracing::debug!(status = status.as_u16(), detail = %text, "plain-text rejection answered as JSON");
        crate::HttpError::new(status, text)
    };
    let mut json = axum::response::IntoResponse::into_response(err);
    std::mem::swap(res.body_mut(), json.body_mut());
    res.headers_mut().remove(http::header::CONTENT_TYPE);
    res.headers_mut().remove(http::header::CONTENT_LENGTH);
    res.headers_mut().extend(json.headers_mut().drain());
    res.extensions_mut()
        .extend(std::mem::take(json.extensions_mut()));
}

/// The whole body as text, if it is all there now (see [`crate::body::ready_bytes`]).
fn ready_text(body: &mut Body) -> Option<String> {
    crate::body::ready_bytes(body)
        .map(|bytes| String::from_utf8_lossy(&bytes).trim_end().to_owned())
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
    /// The app's future; the route its [`RouteCaptureService`] reports during a poll goes into
    /// the request's context. It passes through when the app reports no route.
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
