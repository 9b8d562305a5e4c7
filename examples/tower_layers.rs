//! run with: cargo run --example tower_layers
//! (then: curl -i -H 'origin: https://app.example' -H 'accept-encoding: gzip' localhost:3000/)
//!
//! tower and tower-http layers in a stack: each layer's service is built once, when the stack
//! is built, so stateful layers (a concurrency limit) keep their state, and an invalid CORS
//! configuration stops the program at start-up instead of failing a request.

use std::time::Duration;

use axum::{routing::get, Router};
use callnext::serve::{shutdown_signal, Server};
use callnext::Stack;
use http::{HeaderValue, Method};
use tower::limit::ConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cors = CorsLayer::new()
        .allow_origin(HeaderValue::from_static("https://app.example"))
        .allow_methods([Method::GET, Method::POST]);
    let stack = Stack::new()
        .layer("cors", cors)
        .layer("compression", CompressionLayer::new())
        // Over 2 s: a JSON 504 (tower's timeout error, answered by the stack).
        .layer("timeout", TimeoutLayer::new(Duration::from_secs(2)))
        .layer("concurrency", ConcurrencyLimitLayer::new(100));
    print!("{stack}");
    let app = Router::new()
        .route("/", get(|| async { "hello ".repeat(200) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let service = stack
        .try_service(app)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err.to_string()))?;
    let server = Server::new()
        .bind("127.0.0.1:3000".parse().unwrap())
        .await?;
    println!("listening on http://{}", server.local_addr()?);
    server.serve(service, shutdown_signal()).await
}
