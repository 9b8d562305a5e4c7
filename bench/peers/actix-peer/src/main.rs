//! The seed FastAPI app ("Async Middleware in FastAPI") written with actix-web 4.
//!
//! * `GET /` answers `{"message":"Hello World"}` after 100 ms of simulated I/O.
//! * `GET /items/{item_id}` answers `{"item_id":N}` after 50 ms; item 99 is a
//!   404 `{"detail":"Item 99 not found"}`.
//! * The function middleware (`actix_web::middleware::from_fn`) sleeps 10 ms
//!   before `next`, 5 ms after, and sets `X-Process-Time` and
//!   `X-Custom-Middleware-Header`.
//! * The class-style middleware is a `Transform` + `Service` pair with a
//!   `some_option` field; it sets `X-Another-Middleware`.
//!
//! As in FastAPI, the middleware registered last is the outermost one.
//!
//! `--no-simulated-io` skips every sleep; `--no-middleware` serves the same
//! routes without either middleware. One actix worker (`workers(1)`).

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::web::{self, ThinData};
use actix_web::{App, Error, HttpResponse, HttpServer};
use clap::Parser;
use serde::Serialize;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Seed FastAPI app on actix-web 4 (benchmark peer)")]
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
            actix_web::rt::time::sleep(Duration::from_millis(millis)).await;
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

async fn read_root(ThinData(config): ThinData<Config>) -> HttpResponse {
    config.simulated_io(100).await;
    HttpResponse::Ok().json(Message {
        message: "Hello World",
    })
}

async fn read_item(ThinData(config): ThinData<Config>, item_id: web::Path<i64>) -> HttpResponse {
    let item_id = item_id.into_inner();
    config.simulated_io(50).await;
    if item_id == 99 {
        return HttpResponse::NotFound().json(Detail {
            detail: format!("Item {item_id} not found"),
        });
    }
    HttpResponse::Ok().json(Item { item_id })
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(read_root))
        .route("/items/{item_id}", web::get().to(read_item));
}

const X_PROCESS_TIME: HeaderName = HeaderName::from_static("x-process-time");
const X_CUSTOM_MIDDLEWARE_HEADER: HeaderName =
    HeaderName::from_static("x-custom-middleware-header");
const X_ANOTHER_MIDDLEWARE: HeaderName = HeaderName::from_static("x-another-middleware");

/// The seed's `timing_and_custom_header_middleware`.
async fn timing_and_custom_header(
    ThinData(config): ThinData<Config>,
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    config.simulated_io(10).await;
    let mut response = next.call(request).await?;
    config.simulated_io(5).await;
    let process_time = start.elapsed().as_secs_f64().to_string();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&process_time) {
        headers.insert(X_PROCESS_TIME, value);
    }
    headers.insert(
        X_CUSTOM_MIDDLEWARE_HEADER,
        HeaderValue::from_static("Hello from Async Middleware!"),
    );
    Ok(response)
}

/// The seed's `AnotherAsyncMiddleware`, as an actix `Transform`.
#[derive(Debug, Clone)]
struct AnotherAsyncMiddleware {
    some_option: Rc<str>,
}

impl AnotherAsyncMiddleware {
    fn new(some_option: &str) -> Self {
        Self {
            some_option: Rc::from(some_option),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for AnotherAsyncMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = AnotherAsyncService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AnotherAsyncService {
            service,
            some_option: Rc::clone(&self.some_option),
        }))
    }
}

/// The service produced by [`AnotherAsyncMiddleware`].
#[derive(Debug)]
struct AnotherAsyncService<S> {
    service: S,
    #[expect(
        dead_code,
        reason = "kept like the seed's instance attribute; only its per-request print read it"
    )]
    some_option: Rc<str>,
}

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for AnotherAsyncService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        // Pre-processing would go here; the seed only logs.
        let response = self.service.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            response.headers_mut().insert(
                X_ANOTHER_MIDDLEWARE,
                HeaderValue::from_static("Processed by class-based middleware"),
            );
            Ok(response)
        })
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = Config {
        simulated_io: !args.no_simulated_io,
    };
    let addr = (args.host.as_str(), args.port);
    eprintln!(
        "actix-peer listening on http://{}:{} (middleware: {})",
        args.host, args.port, !args.no_middleware
    );
    // The two branches build differently typed `App`s, hence two servers.
    if args.no_middleware {
        HttpServer::new(move || App::new().app_data(ThinData(config)).configure(routes))
            .workers(1)
            .bind(addr)?
            .run()
            .await
    } else {
        let some_option = "custom_config_value";
        eprintln!("actix-peer: AnotherAsyncMiddleware configured with option '{some_option}'");
        HttpServer::new(move || {
            App::new()
                .app_data(ThinData(config))
                .configure(routes)
                .wrap(from_fn(timing_and_custom_header))
                .wrap(AnotherAsyncMiddleware::new(some_option))
        })
        .workers(1)
        .bind(addr)?
        .run()
        .await
    }
}
