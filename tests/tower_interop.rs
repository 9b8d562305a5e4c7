//! tower both ways: tower layers inside a stack; a stack inside axum and directly under hyper.

mod common;

use std::time::Duration;

use axum::{routing::get, Router};
use bytes::Bytes;
use callnext::{Next, Request, Response, Stack, TestClient};
use http::{header, HeaderValue, Method};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower_http::cors::CorsLayer;
use tower_http::set_header::SetResponseHeaderLayer;

async fn mark(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert("x-callnext", HeaderValue::from_static("1"));
    res
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

#[tokio::test]
async fn tower_http_cors_inside_a_stack() {
    let cors = CorsLayer::new()
        .allow_origin(HeaderValue::from_static("https://example.com"))
        .allow_methods([Method::GET]);
    let stack = Stack::new().layer("cors", cors).func(mark);
    assert_eq!(stack.to_string(), "0 cors (tower)\n1 mark (function)\n");
    let client = TestClient::new(stack.service(app()));

    let req = http::Request::get("/")
        .header(header::ORIGIN, "https://example.com")
        .body(Default::default())
        .unwrap();
    let res = client.request(req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://example.com")
    );
    assert_eq!(res.header("x-callnext"), Some("1"));

    // A preflight is answered by the CORS layer itself: the rest of the stack never runs.
    let req = http::Request::builder()
        .method(Method::OPTIONS)
        .uri("/")
        .header(header::ORIGIN, "https://example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Default::default())
        .unwrap();
    let res = client.request(req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("access-control-allow-methods"), Some("GET"));
    assert_eq!(res.header("x-callnext"), None);
}

#[tokio::test]
async fn layer_that_needs_a_static_inner_service() {
    // axum's own `from_fn` requires an owned, 'static inner service.
    async fn axum_mw(
        req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        let mut res = next.run(req).await;
        res.headers_mut()
            .insert("x-axum-mw", HeaderValue::from_static("1"));
        res
    }
    let stack = Stack::new()
        .layer("axum_from_fn", axum::middleware::from_fn(axum_mw))
        .layer(
            "set_header",
            SetResponseHeaderLayer::overriding(
                header::SERVER,
                HeaderValue::from_static("callnext"),
            ),
        );
    let res = TestClient::new(stack.service(app())).get("/").await;
    assert_eq!(res.header("x-axum-mw"), Some("1"));
    assert_eq!(res.header("server"), Some("callnext"));
    assert_eq!(res.text(), "ok");
}

#[tokio::test]
async fn stack_as_a_layer_in_axum_router() {
    let stack = Stack::new().func(mark);
    let router: Router = app().layer(stack);
    let res = TestClient::new(router).get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("x-callnext"), Some("1"));
    assert_eq!(res.text(), "ok");
}

#[tokio::test]
async fn stack_directly_under_hyper() {
    let service = Stack::new().func(mark).service(app());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        hyper::server::conn::http1::Builder::new()
            .serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .await
            .unwrap();
    });
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(format!("http://{addr}/").parse().unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-callnext"], "1");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    drop(client);
    server.abort();
}
