//! run with: cargo run --example seed_middlewares   (then: curl -i localhost:3000/items/1)
//!
//! The FastAPI seed's two middlewares, written the way the seed writes them: a function
//! middleware that times the request and sets two headers, and a class-style middleware with an
//! option; served by callnext's server.

use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use callnext::extract::Path;
use callnext::serve::{shutdown_signal, Server};
use callnext::{Entry, HttpError, Middleware, Next, Request, Response, Stack};

// @app.middleware("http")
async fn timing_and_custom_header_middleware(req: Request, next: Next<'_>) -> Response {
    tracing::info!(path = req.uri().path(), "Middleware: Request received");
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(10)).await; // async pre-processing
    let mut res = next.run(req).await; // await call_next(request)
    tokio::time::sleep(Duration::from_millis(5)).await; // async post-processing
    let secs = start.elapsed().as_secs_f64().to_string();
    let headers = res.headers_mut();
    headers.insert("x-process-time", secs.parse().unwrap());
    headers.insert(
        "x-custom-middleware-header",
        "Hello from Async Middleware!".parse().unwrap(),
    );
    res
}

// class AnotherAsyncMiddleware, with `some_option`
struct AnotherAsyncMiddleware {
    some_option: String,
}

impl Middleware for AnotherAsyncMiddleware {
    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        tracing::info!(option = %self.some_option, "AnotherAsyncMiddleware: Pre-processing");
        let mut res = next.run(req).await;
        res.headers_mut().insert(
            "x-another-middleware",
            "Processed by class-based middleware".parse().unwrap(),
        );
        res
    }
}

async fn read_item(Path(item_id): Path<i64>) -> Result<String, HttpError> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    if item_id == 99 {
        return Err(HttpError::not_found("Item 99 not found"));
    }
    Ok(format!(r#"{{"item_id":{item_id}}}"#))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let app = Router::new()
        .route("/", get(|| async { r#"{"message":"Hello World"}"# }))
        .route("/items/{item_id}", get(read_item));
    // FastAPI prepends every middleware, so the class added last runs first; here the order you
    // read is the order they run.
    let stack = Stack::new()
        .push(
            Entry::middleware(AnotherAsyncMiddleware {
                some_option: "custom_config_value".into(),
            })
            .named("another"),
        )
        .push(Entry::func(timing_and_custom_header_middleware).named("timing"));
    print!("{stack}");
    let server = Server::new()
        .bind("127.0.0.1:3000".parse().unwrap())
        .await?;
    println!("listening on http://{}", server.local_addr()?);
    server.serve(stack.service(app), shutdown_signal()).await
}
