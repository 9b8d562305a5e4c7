//! axum's own extractors' plain-text rejections, and an app's plain-text errors, answered as
//! callnext's JSON errors; streams and successes left alone; the option off.

use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use callnext::{HttpError, Stack, TestClient};

#[derive(Clone)]
struct Missing;

fn app() -> Router {
    Router::new()
        .route(
            "/json",
            post(
                |axum::Json(v): axum::Json<std::collections::HashMap<String, u32>>| async move {
                    format!("{v:?}")
                },
            ),
        )
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move { id.to_string() }),
        )
        .route(
            "/ext",
            get(|Extension(_): Extension<Missing>| async { "never" }),
        )
        .route(
            "/text",
            get(|| async { (StatusCode::CONFLICT, "already there") }),
        )
        .route("/ok", get(|| async { "plain and fine" }))
        .route(
            "/stream",
            get(|| async {
                let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
                    bytes::Bytes::from("streamed"),
                )]);
                (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "text/plain")],
                    axum::body::Body::from_stream(chunks),
                )
            }),
        )
}

#[tokio::test]
async fn axum_rejections_speak_json() {
    let client = TestClient::new(Stack::new().service(app()));
    let res = client.post("/json").body("{}").await;
    assert_eq!(res.status(), 415);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        res.text(),
        r#"{"detail":"Expected request with `Content-Type: application/json`"}"#
    );
    let res = client
        .post("/json")
        .header("content-type", "application/json")
        .body(r#"{"a": "x"}"#)
        .await;
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json();
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Failed to deserialize the JSON body"),
        "{detail}"
    );

    let res = client.get("/items/abc").await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.text(),
        r#"{"detail":"Invalid URL: Cannot parse `abc` to a `u32`"}"#
    );

    // A missing extension is the server's fault: no internals in the answer.
    let res = client.get("/ext").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);

    let res = client.get("/text").await;
    assert_eq!(res.status(), 409);
    assert_eq!(res.text(), r#"{"detail":"already there"}"#);
}

#[tokio::test]
async fn successes_and_streams_are_left_alone() {
    let client = TestClient::new(Stack::new().service(app()));
    let res = client.get("/ok").await;
    assert_eq!(res.text(), "plain and fine");
    assert!(res
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let res = client.get("/stream").await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.text(), "streamed");
}

#[tokio::test]
async fn exception_handlers_and_middlewares_see_an_http_error() {
    let stack = Stack::new().on_http_error(|err: &HttpError| {
        axum::response::IntoResponse::into_response((
            err.status(),
            [("content-type", "application/problem+json")],
            format!(
                r#"{{"status":{},"title":{}}}"#,
                err.status().as_u16(),
                err.detail()
            ),
        ))
    });
    let client = TestClient::new(stack.service(app()));
    let res = client.get("/items/abc").await;
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        res.text(),
        r#"{"status":400,"title":"Invalid URL: Cannot parse `abc` to a `u32`"}"#
    );
}

#[tokio::test]
async fn the_option_off_keeps_axum_answers() {
    let client = TestClient::new(Stack::new().json_rejections(false).service(app()));
    let res = client.get("/text").await;
    assert_eq!(res.text(), "already there");
    let text =
        callnext::config::Config::parse("[stack]\njson_rejections = false\n", "app.toml", &[])
            .unwrap()
            .stack(&callnext::config::Registry::new())
            .unwrap();
    let res = TestClient::new(text.service(app())).get("/text").await;
    assert_eq!(res.text(), "already there");
}
