//! Errors and panics become responses where they happen and flow out through the stack.

mod common;

use axum::{routing::get, Router};
use callnext::serve::Server;
use callnext::{HttpError, Next, Request, Response, Stack, TestClient};
use http::HeaderValue;

async fn outer(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert("x-outer", HeaderValue::from_static("1"));
    res
}

/// Panics when asked to, before or after calling next.
async fn middle(req: Request, next: Next<'_>) -> Response {
    if req.headers().contains_key("x-panic-before") {
        panic!("middle exploded before next");
    }
    let after = req.headers().contains_key("x-panic-after");
    let mut res = next.run(req).await;
    if after {
        panic!("middle exploded after next");
    }
    res.headers_mut()
        .insert("x-middle", HeaderValue::from_static("1"));
    res
}

async fn inner(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert("x-inner", HeaderValue::from_static("1"));
    res
}

async fn guard(req: Request, next: Next<'_>) -> Result<Response, HttpError> {
    if req.headers().contains_key("x-deny") {
        return Err(HttpError::forbidden("Denied by guard").with_header("x-guard", "denied"));
    }
    Ok(next.run(req).await)
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/panic",
            get(|| async {
                panic!("handler exploded");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/missing",
            get(|| async { Err::<String, _>(HttpError::not_found("Thing not found")) }),
        )
        .route(
            "/detail-object",
            get(|| async {
                Err::<String, _>(HttpError::new(
                    http::StatusCode::CONFLICT,
                    serde_json::json!({"code": "dup", "ids": [1, 2]}),
                ))
            }),
        )
}

fn stack() -> Stack {
    Stack::new()
        .func(outer)
        .func(middle)
        .func(inner)
        .func(guard)
}

fn req(path: &str, header: Option<&str>) -> Request {
    let mut b = http::Request::get(path);
    if let Some(h) = header {
        b = b.header(h, "1");
    }
    b.body(Default::default()).unwrap()
}

#[tokio::test]
async fn handler_error_is_json_and_outer_middlewares_decorate_it() {
    let client = TestClient::new(stack().service(app()));
    let res = client.get("/missing").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.text(), r#"{"detail":"Thing not found"}"#);
    for h in ["x-outer", "x-middle", "x-inner"] {
        assert_eq!(res.header(h), Some("1"), "{h} missing");
    }
    let res = client.get("/detail-object").await;
    assert_eq!(res.status(), 409);
    assert_eq!(res.text(), r#"{"detail":{"code":"dup","ids":[1,2]}}"#);
}

#[tokio::test]
async fn middleware_error_renders_at_its_boundary() {
    let client = TestClient::new(stack().service(app()));
    let res = client.request(req("/", Some("x-deny"))).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.text(), r#"{"detail":"Denied by guard"}"#);
    assert_eq!(res.header("x-guard"), Some("denied"));
    // Every middleware outside the guard still saw a response.
    for h in ["x-outer", "x-middle", "x-inner"] {
        assert_eq!(res.header(h), Some("1"), "{h} missing");
    }
}

#[tokio::test]
async fn handler_panic_is_a_500_that_flows_through_every_middleware() {
    let logs = common::Logs::capture();
    let client = TestClient::new(stack().service(app()));
    let res = client.get("/panic").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
    for h in ["x-outer", "x-middle", "x-inner"] {
        assert_eq!(res.header(h), Some("1"), "{h} missing");
    }
    let logs = logs.text();
    assert!(
        logs.contains("middleware=\"app\"") || logs.contains("middleware=app"),
        "{logs}"
    );
    assert!(logs.contains("handler exploded"), "{logs}");
    // And the next request is served.
    assert_eq!(client.get("/").await.status(), 200);
}

#[tokio::test]
async fn middleware_panic_is_a_500_at_its_boundary() {
    let logs = common::Logs::capture();
    let client = TestClient::new(stack().service(app()));

    let res = client.request(req("/", Some("x-panic-before"))).await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
    assert_eq!(res.header("x-outer"), Some("1"), "outer sees the 500");
    assert_eq!(res.header("x-middle"), None);
    assert_eq!(res.header("x-inner"), None, "inner never ran");

    let res = client.request(req("/", Some("x-panic-after"))).await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.header("x-outer"), Some("1"));
    assert_eq!(
        res.header("x-middle"),
        None,
        "the inner response was lost with the panic"
    );

    let logs = logs.text();
    assert!(logs.contains("middle exploded before next"), "{logs}");
    assert!(logs.contains("middle exploded after next"), "{logs}");
    assert!(
        logs.contains("middleware=\"middle\"") || logs.contains("middleware=middle"),
        "{logs}"
    );
    assert_eq!(client.get("/").await.status(), 200);
}

#[tokio::test]
async fn server_keeps_serving_after_panics() {
    let running = common::spawn(Server::new(), stack().service(app())).await;
    let res = common::get(&running.url("/panic")).await;
    assert_eq!(res.status, 500);
    assert_eq!(res.header("x-outer"), Some("1"));
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
    for _ in 0..3 {
        let res = common::get(&running.url("/")).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), "ok");
    }
    running.stop().await;
}
