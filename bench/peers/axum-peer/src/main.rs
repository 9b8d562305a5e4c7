//! The seed FastAPI app ("Async Middleware in FastAPI") written with axum 0.8.
//!
//! * `GET /` answers `{"message":"Hello World"}` after 100 ms of simulated I/O.
//! * `GET /items/{item_id}` answers `{"item_id":N}` after 50 ms; item 99 is a
//!   404 `{"detail":"Item 99 not found"}`.
//! * The function middleware (`axum::middleware::from_fn_with_state`) sleeps
//!   10 ms before `next`, 5 ms after, and sets `X-Process-Time` and
//!   `X-Custom-Middleware-Header`.
//! * The class-style middleware is a hand-written tower `Layer` + `Service`
//!   with a `some_option` field; it sets `X-Another-Middleware`.
//!
//! As in FastAPI, the middleware registered last is the outermost one, so a
//! request passes the class-style middleware first, then the function one.
//!
//! `--no-simulated-io` skips every sleep; `--no-middleware` serves the same
//! routes without either middleware. One current-thread tokio runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde::Serialize;
use tower::{Layer, Service};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Seed FastAPI app on axum 0.8 (benchmark peer)")]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Skip the simulated I/O sleeps in the middleware and the endpoints.
    #[arg(long)]
    no_simulated_io: bool,
    /// Serve the routes without the two middlewares.
    #[arg(long)]
    no_middleware: bool,
}

/// Shared, copyable configuration handed to handlers and middleware.
#[derive(Debug, Clone, Copy)]
struct Config {
    simulated_io: bool,
}

impl Config {
    /// Simulated asynchronous I/O: a timer sleep, skipped when disabled.
    async fn simulated_io(self, millis: u64) {
        if self.simulated_io {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
    }
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

#[derive(Serialize)]
struct Item {
    item_id: i64,
}

#[derive(Serialize)]
struct Detail {
    detail: String,
}

async fn read_root(State(config): State<Config>) -> Json<Message> {
    config.simulated_io(100).await;
    Json(Message {
        message: "Hello World",
    })
}

async fn read_item(State(config): State<Config>, Path(item_id): Path<i64>) -> Response {
    config.simulated_io(50).await;
    if item_id == 99 {
        let detail = Detail {
            detail: format!("Item {item_id} not found"),
        };
        return (StatusCode::NOT_FOUND, Json(detail)).into_response();
    }
    Json(Item { item_id }).into_response()
}

static X_PROCESS_TIME: HeaderName = HeaderName::from_static("x-process-time");
static X_CUSTOM_MIDDLEWARE_HEADER: HeaderName =
    HeaderName::from_static("x-custom-middleware-header");
static X_ANOTHER_MIDDLEWARE: HeaderName = HeaderName::from_static("x-another-middleware");

/// The seed's `timing_and_custom_header_middleware`.
async fn timing_and_custom_header(
    State(config): State<Config>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    config.simulated_io(10).await;
    let mut response = next.run(request).await;
    config.simulated_io(5).await;
    let process_time = start.elapsed().as_secs_f64().to_string();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&process_time) {
        headers.insert(X_PROCESS_TIME.clone(), value);
    }
    headers.insert(
        X_CUSTOM_MIDDLEWARE_HEADER.clone(),
        HeaderValue::from_static("Hello from Async Middleware!"),
    );
    response
}

/// The seed's `AnotherAsyncMiddleware`, as a tower layer.
#[derive(Debug, Clone)]
struct AnotherAsyncMiddlewareLayer {
    some_option: Arc<str>,
}

impl AnotherAsyncMiddlewareLayer {
    fn new(some_option: &str) -> Self {
        Self {
            some_option: Arc::from(some_option),
        }
    }
}

impl<S> Layer<S> for AnotherAsyncMiddlewareLayer {
    type Service = AnotherAsyncMiddleware<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnotherAsyncMiddleware {
            inner,
            some_option: Arc::clone(&self.some_option),
        }
    }
}

/// The service produced by [`AnotherAsyncMiddlewareLayer`].
#[derive(Debug, Clone)]
struct AnotherAsyncMiddleware<S> {
    inner: S,
    #[expect(
        dead_code,
        reason = "kept like the seed's instance attribute; only its per-request print read it"
    )]
    some_option: Arc<str>,
}

impl<S> Service<Request> for AnotherAsyncMiddleware<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AnotherAsyncFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Pre-processing would go here; the seed only logs.
        AnotherAsyncFuture {
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`AnotherAsyncMiddleware`]: awaits the inner
    /// service, then adds the middleware's header.
    struct AnotherAsyncFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for AnotherAsyncFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = match self.project().inner.poll(cx) {
            Poll::Ready(result) => result?,
            Poll::Pending => return Poll::Pending,
        };
        response.headers_mut().insert(
            X_ANOTHER_MIDDLEWARE.clone(),
            HeaderValue::from_static("Processed by class-based middleware"),
        );
        Poll::Ready(Ok(response))
    }
}

fn app(config: Config, with_middleware: bool) -> Router {
    let routes = Router::new()
        .route("/", get(read_root))
        .route("/items/{item_id}", get(read_item));
    if !with_middleware {
        return routes.with_state(config);
    }
    let another = AnotherAsyncMiddlewareLayer::new("custom_config_value");
    eprintln!(
        "axum-peer: AnotherAsyncMiddleware configured with option '{}'",
        another.some_option
    );
    routes
        .layer(middleware::from_fn_with_state(
            config,
            timing_and_custom_header,
        ))
        .layer(another)
        .with_state(config)
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = Config {
        simulated_io: !args.no_simulated_io,
    };
    let router = app(config, !args.no_middleware);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
        let addr: SocketAddr = listener.local_addr()?;
        eprintln!("axum-peer listening on http://{addr}");
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            // Same as hyper-peer and actix: no Nagle delay on small responses.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router).await
    })
}
