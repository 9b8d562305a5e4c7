//! The no-op entries, the app and the stack shape that both benchmarks measure.

#![allow(dead_code)] // each benchmark uses its own part of this

use std::task::{Context, Poll};

use axum::routing::get;
use axum::Router;
use callnext::{Body, Entry, Flow, Hook, HttpError, Middleware, Next, Request, Response, Stack};
use tower::{Layer, Service};

pub(crate) async fn noop(req: Request, next: Next<'_>) -> Response {
    next.run(req).await
}

pub(crate) struct Noop;

impl Middleware for Noop {
    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        next.run(req).await
    }
}

/// A hook that does nothing on either side: the cost of the hook machinery itself.
pub(crate) struct NoopHook;

impl Hook for NoopHook {
    type State = ();

    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a> {
        Flow::Continue(())
    }
}

/// A hook whose async work is ready at once (a cache hit behind an async API).
pub(crate) struct ReadyHook;

impl Hook for ReadyHook {
    type State = ();

    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a> {
        Flow::wait(async { Ok::<(), HttpError>(()) })
    }
}

/// The static-dispatch floor: a hand-written tower layer that only forwards.
#[derive(Clone, Copy)]
pub(crate) struct NoopLayer;

impl<S> Layer<S> for NoopLayer {
    type Service = NoopService<S>;
    fn layer(&self, inner: S) -> NoopService<S> {
        NoopService(inner)
    }
}

#[derive(Clone, Copy)]
pub(crate) struct NoopService<S>(S);

impl<S, R> Service<R> for NoopService<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, req: R) -> S::Future {
        self.0.call(req)
    }
}

/// The app behind every stack: an axum `Router` with one route.
pub(crate) fn endpoint() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

pub(crate) fn request() -> Request {
    http::Request::get("/").body(Body::empty()).unwrap()
}

/// `n` entries made by `entry`, each under its own name.
pub(crate) fn stack_of(n: usize, base: Stack, entry: impl Fn() -> Entry) -> Stack {
    (0..n).fold(base, |s, i| s.push(entry().named(format!("e{i}"))))
}

/// Each battery alone, and the production stack of `bench/batteries.sh`.
pub(crate) const BATTERIES: [&str; 12] = [
    "none",
    "noop_hook",
    "request_id",
    "access_log",
    "security_headers",
    "cors",
    "timeout",
    "concurrency",
    "body_limit",
    "rate_limit",
    "session",
    "production",
];

/// A stack of the battery `name` (or of all of them for `production`), its access log
/// written to nowhere.
pub(crate) fn battery_stack(name: &str) -> Stack {
    use callnext::middleware::access_log::{AccessLog, SharedWriter, Sink};
    use callnext::middleware::limit::{BodyLimit, ConcurrencyLimit};
    use callnext::middleware::{Cors, SecurityHeaders, SetRequestId, Timeout};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let access_log = || {
        AccessLog::builder()
            .sink(Sink::Writer(SharedWriter(Arc::new(Mutex::new(
                std::io::sink(),
            )))))
            .build()
            .unwrap()
    };
    let cors = || {
        Cors::builder()
            .allow_origins(["https://app.example"])
            .build()
            .unwrap()
    };
    let timeout = || Timeout::new(Duration::from_secs(30));
    let concurrency = || ConcurrencyLimit::new(1000).unwrap();
    match name {
        "request_id" => Stack::new().hook(SetRequestId::new()),
        "access_log" => Stack::new().hook(access_log()),
        "security_headers" => Stack::new().hook(SecurityHeaders::api()),
        "cors" => Stack::new().hook(cors()),
        "timeout" => Stack::new().middleware(timeout()),
        "concurrency" => Stack::new().middleware(concurrency()),
        "body_limit" => Stack::new().hook(BodyLimit::new(1_000_000).unwrap()),
        "none" => Stack::new(),
        // The floor under any hook battery: the hook boundary alone.
        "noop_hook" => Stack::new().hook(NoopHook),
        // A request that does not touch its session (the route never extracts it).
        "session" => Stack::new().hook(
            callnext::middleware::Sessions::builder()
                .secret([1u8; 64])
                .build()
                .unwrap(),
        ),
        "rate_limit" => Stack::new().hook(
            callnext::middleware::RateLimit::builder()
                .limit("1000000/s")
                .build()
                .unwrap(),
        ),
        "production" => Stack::new()
            .hook(SetRequestId::new())
            .hook(access_log())
            .hook(cors())
            .hook(SecurityHeaders::api())
            .middleware(timeout())
            .middleware(concurrency()),
        other => panic!("unknown battery {other}"),
    }
}
