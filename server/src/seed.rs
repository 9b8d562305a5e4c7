//! The seed application: the FastAPI example callnext started from, served by the `callnext`
//! binary. It is the binary's, not the library's: an application of callnext like any other.
//!
//! Routes `GET /` and `GET /items/{item_id}` with their simulated async I/O, the function
//! middleware that times the request and sets two headers, and the struct middleware with an
//! option. The order is the one FastAPI really runs the seed in: `add_middleware` prepends, so
//! the class-based middleware is outermost.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Value};

use callnext::config::Registry;
use callnext::extract::{Json, Path};
use callnext::middleware::process_time;
use callnext::{
    Entry, HttpError, Middleware, Next, Printable, Request, Response, Stack, StackService,
};

/// Settings of the seed application: the `[seed]` table of the configuration file.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedConfig {
    /// Whether the handlers and the function middleware await their simulated I/O (sleeps of
    /// 100 ms, 50 ms, 10 ms and 5 ms). Turn off for benchmarks; responses stay the same.
    pub simulated_io: bool,
    /// The option of [`AnotherAsyncMiddleware`].
    pub some_option: String,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            simulated_io: true,
            some_option: "default_value".to_owned(),
        }
    }
}

/// Whether simulated I/O is on; shared by the middleware and the handlers.
#[derive(Debug, Clone, Copy)]
pub struct SimulatedIo(pub bool);

impl SimulatedIo {
    async fn sleep(self, duration: Duration) {
        if self.0 {
            tokio::time::sleep(duration).await;
        }
    }
}

// Header names built once: inserting by `&str` would parse and allocate each name per request.
static X_PROCESS_TIME: HeaderName = HeaderName::from_static("x-process-time");
static X_CUSTOM_MIDDLEWARE_HEADER: HeaderName =
    HeaderName::from_static("x-custom-middleware-header");
static X_ANOTHER_MIDDLEWARE: HeaderName = HeaderName::from_static("x-another-middleware");

/// The seed's `@app.middleware("http")` function: logs, awaits 10 ms, calls next, awaits 5 ms,
/// then sets `X-Process-Time` and `X-Custom-Middleware-Header`.
pub async fn timing_and_custom_header_middleware(
    io: &SimulatedIo,
    req: Request,
    next: Next<'_>,
) -> Response {
    // The path is kept for the log line after `next` only when that line will be written.
    let uri = logged_uri(&req);
    // Escaped and bounded: a client's path cannot forge or flood the log.
    let path = Printable::new(uri.as_ref().map_or("", |uri| uri.path()));
    tracing::info!(%path, "Middleware: Request received");
    let start = Instant::now();

    io.sleep(Duration::from_millis(10)).await;
    tracing::debug!("Middleware: Simulated async pre-processing complete.");

    let mut res = next.run(req).await;

    io.sleep(Duration::from_millis(5)).await;
    tracing::debug!("Middleware: Simulated async post-processing complete.");

    let elapsed = start.elapsed();
    let process_time = elapsed.as_secs_f64();
    let headers = res.headers_mut();
    // Seconds as a plain decimal with nanosecond precision, never in exponent form.
    headers.insert(X_PROCESS_TIME.clone(), process_time::seconds(elapsed));
    headers.insert(
        X_CUSTOM_MIDDLEWARE_HEADER.clone(),
        HeaderValue::from_static("Hello from Async Middleware!"),
    );
    tracing::info!(%path, process_time, "Middleware: Response processed");
    res
}

/// The request's URI, for the log lines around `next`, when INFO lines are written at all (a
/// `Uri` clone shares its bytes, but still costs reference counting on every request).
fn logged_uri(req: &Request) -> Option<http::Uri> {
    tracing::enabled!(tracing::Level::INFO).then(|| req.uri().clone())
}

/// The seed's class-based middleware with an option.
#[derive(Debug, Clone)]
pub struct AnotherAsyncMiddleware {
    /// Logged on every request. Defaults to `"default_value"`, as in the seed.
    pub some_option: String,
}

impl Default for AnotherAsyncMiddleware {
    fn default() -> Self {
        Self {
            some_option: "default_value".to_owned(),
        }
    }
}

impl Middleware for AnotherAsyncMiddleware {
    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        let uri = logged_uri(&req);
        let path = Printable::new(uri.as_ref().map_or("", |uri| uri.path()));
        tracing::info!(option = %self.some_option, %path, "AnotherAsyncMiddleware: Pre-processing");
        let mut res = next.run(req).await;
        tracing::info!(%path, "AnotherAsyncMiddleware: Post-processing");
        res.headers_mut().insert(
            X_ANOTHER_MIDDLEWARE.clone(),
            HeaderValue::from_static("Processed by class-based middleware"),
        );
        res
    }
}

#[derive(serde::Serialize)]
struct Message {
    message: &'static str,
}

#[derive(serde::Serialize)]
struct Item {
    item_id: i64,
}

async fn read_root(State(io): State<SimulatedIo>) -> Json<Message> {
    tracing::info!("Endpoint: read_root called.");
    io.sleep(Duration::from_millis(100)).await;
    Json(Message {
        message: "Hello World",
    })
}

async fn read_item(
    State(io): State<SimulatedIo>,
    Path(item_id): Path<i64>,
) -> Result<Json<Item>, HttpError> {
    tracing::info!(item_id, "Endpoint: read_item called.");
    io.sleep(Duration::from_millis(50)).await;
    if item_id == 99 {
        return Err(HttpError::not_found("Item 99 not found"));
    }
    Ok(Json(Item { item_id }))
}

/// The seed's routes.
pub fn router(config: &SeedConfig) -> Router {
    Router::new()
        .route("/", get(read_root))
        .route("/items/{item_id}", get(read_item))
        .with_state(SimulatedIo(config.simulated_io))
}

#[derive(Debug, serde::Deserialize)]
struct BlockParams {
    ms: Option<String>,
}

/// `GET /demo/block?ms=N` blocks the runtime thread for N ms (at most 1000) with
/// `std::thread::sleep`, so the blocking detector can be watched at work. Never mount it in
/// production; the server does only behind `--demo-blocking`.
pub fn demo_blocking_router() -> Router {
    async fn block(
        axum::extract::Query(params): axum::extract::Query<BlockParams>,
    ) -> Result<Json<Value>, HttpError> {
        let ms = match params.ms.as_deref().map(str::parse::<u64>) {
            None => 30,
            Some(Ok(ms)) if ms <= 1000 => ms,
            Some(_) => {
                return Err(HttpError::new(
                    http::StatusCode::UNPROCESSABLE_ENTITY,
                    "`ms` must be a whole number of milliseconds from 0 to 1000",
                ))
            }
        };
        std::thread::sleep(Duration::from_millis(ms));
        Ok(Json(json!({ "blocked_ms": ms })))
    }
    Router::new().route("/demo/block", get(block))
}

/// The example app's session demo, mounted when `[middleware.session]` is configured (not part
/// of the seed): `POST /session/items/{item_id}` adds an item to the visitor's session (which
/// keeps the 100 most recent), `GET /session` lists them.
pub fn session_demo_router() -> Router {
    use callnext::middleware::session::Session;
    /// Items kept per session: what a client sends must not grow its session without end.
    const KEPT: usize = 100;
    async fn add(session: Session, Path(item_id): Path<i64>) -> Result<Json<Value>, HttpError> {
        // An update, not a get and an insert: requests adding at once (over several
        // instances) each keep their item.
        let items = session
            .update("items", move |items: Option<Vec<i64>>| {
                let mut items = items.unwrap_or_default();
                items.push(item_id);
                if items.len() > KEPT {
                    items.drain(..items.len() - KEPT);
                }
                Some(items)
            })
            .await?
            .unwrap_or_default();
        Ok(Json(json!({ "items": items })))
    }
    async fn list(session: Session) -> Result<Json<Value>, HttpError> {
        let items: Vec<i64> = session.get("items").await?.unwrap_or_default();
        Ok(Json(json!({ "items": items })))
    }
    Router::new()
        .route("/session/items/{item_id}", axum::routing::post(add))
        .route("/session", get(list))
}

/// The seed's two middlewares, in the order FastAPI runs them.
pub fn stack(config: &SeedConfig) -> Stack {
    Stack::new()
        .push(
            Entry::middleware(AnotherAsyncMiddleware {
                some_option: config.some_option.clone(),
            })
            .named("another"),
        )
        .push(
            Entry::func_with_state(
                SimulatedIo(config.simulated_io),
                timing_and_custom_header_middleware,
            )
            .named("timing"),
        )
}

/// The seed's two middlewares as configuration kinds, registered by name in the order FastAPI
/// runs them: `another` (its `some_option` from `[seed]`, or from `[middleware.another]`) and
/// `timing`. `[stack] order` may list them without tables.
pub fn registry(config: &SeedConfig) -> Registry {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AnotherSettings {
        some_option: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TimingSettings {}

    let some_option = config.some_option.clone();
    let io = SimulatedIo(config.simulated_io);
    Registry::new()
        .middleware("another", move |settings| {
            let s: AnotherSettings = settings.parse()?;
            Ok(Entry::middleware(AnotherAsyncMiddleware {
                some_option: s.some_option.unwrap_or_else(|| some_option.clone()),
            }))
        })
        .middleware("timing", move |settings| {
            let TimingSettings {} = settings.parse()?;
            Ok(Entry::func_with_state(
                io,
                timing_and_custom_header_middleware,
            ))
        })
}

/// The whole seed application: [`stack`] in front of [`router`].
pub fn app(config: &SeedConfig) -> StackService {
    stack(config).service(router(config))
}
