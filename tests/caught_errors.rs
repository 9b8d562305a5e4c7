//! What produced a response travels in its extensions, so a middleware can catch "the
//! endpoint failed with X" (Starlette's `try: await call_next(request) except ...`); an
//! HttpError a body stream ends with is rendered as that error.

use axum::{routing::get, routing::post, Router};
use callnext::extract::{Json, Path, ValidationError};
use callnext::{HttpError, Next, Panicked, Request, Response, Stack, TestClient};
use http::StatusCode;

fn app() -> Router {
    Router::new()
        .route(
            "/teapot",
            get(|| async {
                Err::<(), _>(
                    HttpError::new(StatusCode::IM_A_TEAPOT, "short and stout")
                        .with_header("x-tea", "earl grey"),
                )
            }),
        )
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move { id.to_string() }),
        )
        .route(
            "/panic",
            get(|| async {
                panic!("the kettle broke");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/json",
            post(|Json(v): Json<serde_json::Value>| async move { axum::Json(v) }),
        )
}

/// Answers differently depending on what failed further in.
async fn catcher(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    let caught = if let Some(err) = res.extensions().get::<HttpError>() {
        format!("http {} {}", err.status().as_u16(), err.detail())
    } else if res.extensions().get::<ValidationError>().is_some() {
        "validation".to_owned()
    } else if let Some(p) = res.extensions().get::<Panicked>() {
        format!("panic in {}: {}", p.entry(), p.message())
    } else {
        "none".to_owned()
    };
    res.headers_mut()
        .insert("x-caught", caught.parse().unwrap());
    res
}

#[tokio::test]
async fn a_middleware_sees_what_the_endpoint_raised() {
    let client = TestClient::new(Stack::new().func(catcher).service(app()));
    let res = client.get("/teapot").await;
    assert_eq!(
        res.header("x-caught"),
        Some(r#"http 418 "short and stout""#)
    );
    assert_eq!(res.header("x-tea"), Some("earl grey"));
    assert_eq!(
        client.get("/items/x").await.header("x-caught"),
        Some("validation")
    );
    assert_eq!(
        client.get("/panic").await.header("x-caught"),
        Some("panic in app: the kettle broke")
    );
    assert_eq!(
        client.get("/items/1").await.header("x-caught"),
        Some("none")
    );
}

/// Wraps the request body in a stream that ends with an HttpError after its first chunk.
async fn failing_body(mut req: Request, next: Next<'_>) -> Response {
    let body = std::mem::take(req.body_mut());
    let chunks = futures_util::stream::iter(vec![
        Ok(bytes::Bytes::from("{\"a\":")),
        Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "quota of bytes used up",
        )),
    ]);
    drop(body);
    *req.body_mut() = axum::body::Body::from_stream(chunks);
    next.run(req).await
}

#[tokio::test]
async fn an_http_error_from_the_body_stream_is_that_error() {
    let client = TestClient::new(Stack::new().func(failing_body).service(app()));
    let res = client
        .post("/json")
        .json(&serde_json::json!({"a": 1}))
        .await;
    assert_eq!(res.status(), 413);
    assert_eq!(res.text(), r#"{"detail":"quota of bytes used up"}"#);

    let mut req = Request::new(axum::body::Body::from_stream(futures_util::stream::iter(
        vec![Err::<bytes::Bytes, _>(HttpError::forbidden("no more"))],
    )));
    let err = callnext::body::read_body(&mut req, 1024).await.unwrap_err();
    assert_eq!(err.status(), 403);
    assert_eq!(err.to_string(), "403: no more");
}

#[tokio::test]
async fn debug_mode_shows_the_panic_and_where_it_happened() {
    callnext::install_panic_location_hook();
    let stack = Stack::new()
        .debug(true)
        .on_request("boom", |req: &mut Request| {
            if req.uri().path() == "/hook" {
                panic!("hook went wrong");
            }
        });
    let client = TestClient::new(stack.service(app()));
    // As Starlette's `ServerErrorMiddleware(debug=True)`: plain text for a client that does not
    // ask for HTML (curl, a test client), an HTML page for a browser.
    let res = client.get("/panic").await;
    assert_eq!(res.status(), 500);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let text = res.text();
    assert!(
        text.starts_with("500 Server Error\n\nA panic in `app` at tests/caught_errors.rs:"),
        "{text}"
    );
    assert!(text.ends_with(":\nthe kettle broke\n"), "{text}");
    let res = client
        .get("/panic")
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .await;
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    let html = res.text();
    assert!(html.contains("<h1>500 Server Error</h1>"), "{html}");
    assert!(html.contains("<pre>the kettle broke</pre>"), "{html}");
    assert_eq!(
        res.header("content-length"),
        Some(html.len().to_string().as_str())
    );
    // A client that asks for JSON keeps the JSON body, with the same facts.
    let body: serde_json::Value = client
        .get("/panic")
        .header("accept", "application/json")
        .await
        .json();
    assert_eq!(body["detail"], "Internal Server Error");
    assert_eq!(body["panic"], "the kettle broke");
    assert_eq!(body["entry"], "app");
    assert!(
        body["location"]
            .as_str()
            .unwrap()
            .starts_with("tests/caught_errors.rs:"),
        "{body}"
    );
    let body: serde_json::Value = client
        .get("/hook")
        .header("accept", "application/json")
        .await
        .json();
    assert_eq!(body["panic"], "hook went wrong");
    assert_eq!(body["entry"], "boom");

    // Off by default: the client learns nothing.
    let res = TestClient::new(Stack::new().service(app()))
        .get("/panic")
        .await;
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
}
