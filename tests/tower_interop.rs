//! tower both ways: tower layers inside a stack; a stack inside axum and directly under hyper.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::{routing::get, Router};
use bytes::Bytes;
use callnext::{ConfigErrorKind, Next, Request, Response, Stack, TestClient};
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

    let res = client
        .get("/")
        .header(header::ORIGIN, "https://example.com")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://example.com")
    );
    assert_eq!(res.header("x-callnext"), Some("1"));

    // A preflight is answered by the CORS layer itself: the rest of the stack never runs.
    let res = client
        .options("/")
        .header(header::ORIGIN, "https://example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .await;
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

/// A handler that reports each entry and then waits until it is released.
fn gated_app() -> (
    Router,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    Arc<tokio::sync::Semaphore>,
) {
    let (entered_tx, entered) = tokio::sync::mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler_gate = Arc::clone(&gate);
    let app = Router::new().route(
        "/",
        get(move || {
            let entered = entered_tx.clone();
            let gate = Arc::clone(&handler_gate);
            async move {
                entered.send(()).unwrap();
                gate.acquire().await.unwrap().forget();
                "done"
            }
        }),
    );
    (app, entered, gate)
}

/// A stateful tower layer keeps its state across requests: its service is built once.
#[tokio::test(start_paused = true)]
async fn concurrency_limit_layer_limits_inside_a_stack() {
    let (app, mut entered, gate) = gated_app();
    let stack = Stack::new()
        .func(mark)
        .layer("limit", tower::limit::ConcurrencyLimitLayer::new(1));
    let client = TestClient::new(stack.service(app));

    let first = tokio::spawn({
        let client = client.clone();
        async move { client.get("/").await }
    });
    entered.recv().await.unwrap();
    let second = tokio::spawn({
        let client = client.clone();
        async move { client.get("/").await }
    });
    // Time is paused and only moves when every task is idle, so a second request able to
    // reach the handler would have done so before this timeout fires.
    assert!(
        tokio::time::timeout(Duration::from_secs(60), entered.recv())
            .await
            .is_err(),
        "the second request ran beside the first"
    );
    gate.add_permits(1);
    assert_eq!(first.await.unwrap().text(), "done");
    entered.recv().await.unwrap();
    gate.add_permits(1);
    let res = second.await.unwrap();
    assert_eq!(res.text(), "done");
    assert_eq!(res.header("x-callnext"), Some("1"));
}

#[test]
fn an_invalid_tower_http_cors_config_fails_when_the_service_is_built() {
    // tower-http refuses credentials with a wildcard header list.
    let cors = CorsLayer::new()
        .allow_credentials(true)
        .allow_headers(tower_http::cors::Any);
    let stack = Stack::new().func(mark).layer("cors", cors);
    let err = stack.try_service(app()).unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::LayerFailed);
    let message = err.to_string();
    assert!(
        message.starts_with("tower layer `cors` failed while its service was built: "),
        "{message}"
    );
    assert!(
        message.contains("Access-Control-Allow-Credentials"),
        "{message}"
    );
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stack.service(app())))
        .unwrap_err();
    let panic = panic.downcast_ref::<String>().unwrap();
    assert!(panic.contains("tower layer `cors` failed"), "{panic}");
}

#[tokio::test(start_paused = true)]
async fn tower_timeouts_are_504s() {
    let slow = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        }),
    );
    let stack = Stack::new().func(mark).layer(
        "timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(1)),
    );
    let res = TestClient::new(stack.service(slow)).get("/").await;
    assert_eq!(res.status(), 504);
    assert_eq!(res.text(), r#"{"detail":"Gateway Timeout"}"#);
    assert_eq!(res.header("x-callnext"), Some("1"));
}

#[tokio::test]
async fn axum_serve_takes_a_stack_service_and_requests_carry_connect_info() {
    let app =
        Router::new().route(
            "/peer",
            get(
                |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                    std::net::SocketAddr,
                >| async move { peer.ip().to_string() },
            ),
        );
    let service = Stack::new().func(mark).service(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });
    let res = common::get(&format!("http://{addr}/peer")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "127.0.0.1");
    assert_eq!(res.header("x-callnext"), Some("1"));
    server.abort();
}
