//! Reading the request body in middleware, response transforms, 413, and streaming.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axum::{
    routing::{get, post},
    Router,
};
use bytes::Bytes;
use callnext::body::{read_body, transform_response_body};
use callnext::serve::Server;
use callnext::{Body, Entry, HttpError, Next, Request, Response, Stack, TestClient};
use http_body_util::BodyExt;

const LIMIT: usize = 1024;

/// Reads the body (the seed's "modify the request before it hits the endpoint").
async fn audit(mut req: Request, next: Next<'_>) -> Result<Response, HttpError> {
    let bytes = read_body(&mut req, LIMIT).await?;
    let len = bytes.len();
    let mut res = next.run(req).await;
    res.headers_mut().insert("x-seen-bytes", len.into());
    Ok(res)
}

async fn shout(req: Request, next: Next<'_>) -> Response {
    let res = next.run(req).await;
    transform_response_body(res, LIMIT, |b| Bytes::from(b.to_ascii_uppercase())).await
}

fn echo_app() -> Router {
    Router::new().route("/echo", post(|body: Bytes| async move { body }))
}

#[tokio::test]
async fn middleware_reads_body_and_handler_still_gets_it() {
    let client = TestClient::new(Stack::new().func(audit).service(echo_app()));
    let res = client.post("/echo").body("hello world").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text(), "hello world");
    assert_eq!(res.header("x-seen-bytes"), Some("11"));
}

#[tokio::test]
async fn oversized_body_is_413_json() {
    let client = TestClient::new(Stack::new().func(audit).service(echo_app()));
    let res = client.post("/echo").body(vec![b'x'; LIMIT + 1]).await;
    assert_eq!(res.status(), 413);
    assert_eq!(res.text(), r#"{"detail":"Request body too large"}"#);

    // A streamed body without Content-Length is cut off at the limit too.
    let chunks = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, Infallible>(Bytes::from(vec![b'y'; 100]))),
    );
    let res = client.post("/echo").body(Body::from_stream(chunks)).await;
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn oversized_body_over_a_real_socket_is_413_and_server_lives() {
    let running = common::spawn(Server::new(), Stack::new().func(audit).service(echo_app())).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let req = http::Request::post(running.url("/echo"))
        .body(http_body_util::Full::new(Bytes::from(vec![
            b'x';
            64 * 1024
        ])))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 413);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"detail":"Request body too large"}"#);
    let req = http::Request::post(running.url("/echo"))
        .body(http_body_util::Full::new(Bytes::from_static(b"fine")))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 200);
    running.stop().await;
}

#[tokio::test]
async fn response_transform_rewrites_and_fixes_content_length() {
    let app = Router::new().route("/", get(|| async { "hello" }));
    let client = TestClient::new(Stack::new().func(shout).service(app));
    let res = client.get("/").await;
    assert_eq!(res.text(), "HELLO");
    assert_eq!(res.header("content-length"), Some("5"));

    async fn grow(req: Request, next: Next<'_>) -> Response {
        let res = next.run(req).await;
        transform_response_body(res, LIMIT, |b| {
            let mut v = b.to_vec();
            v.extend_from_slice(b" and more");
            v.into()
        })
        .await
    }
    let app = Router::new().route("/", get(|| async { "hello" }));
    let res = TestClient::new(Stack::new().func(grow).service(app))
        .get("/")
        .await;
    assert_eq!(res.text(), "hello and more");
    assert_eq!(res.header("content-length"), Some("14"));
}

#[tokio::test]
async fn response_transform_leaves_streams_and_large_bodies_alone() {
    let app = Router::new()
        .route(
            "/stream",
            get(|| async {
                let chunks = futures_util::stream::iter(
                    ["a", "b"].map(|s| Ok::<_, Infallible>(Bytes::from(s))),
                );
                Body::from_stream(chunks)
            }),
        )
        .route("/big", get(|| async { "z".repeat(LIMIT * 2) }));
    let client = TestClient::new(Stack::new().func(shout).service(app));
    assert_eq!(client.get("/stream").await.text(), "ab");
    assert_eq!(client.get("/big").await.text(), "z".repeat(LIMIT * 2));
}

async fn passthrough(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut().insert("x-pass", "1".parse().unwrap());
    res
}

/// The first chunk reaches the client while the handler has not yet produced the last one.
#[tokio::test]
async fn streaming_passes_three_middlewares_unbuffered() {
    let (tx_release, rx_release) = tokio::sync::oneshot::channel::<()>();
    let rx_release = std::sync::Mutex::new(Some(rx_release));
    let release = std::sync::Arc::new(rx_release);
    let app = Router::new().route(
        "/sse",
        get(move || {
            let release = release.clone();
            async move {
                let rx = release.lock().unwrap().take().expect("one request");
                let stream = async_stream(rx);
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        }),
    );
    let stack = Stack::new()
        .func(passthrough)
        .func(shout)
        .push(Entry::func(passthrough).named("passthrough_inner"));
    let running = common::spawn(Server::new(), stack.service(app)).await;

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let res = client
        .get(running.url("/sse").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-pass"], "1");
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first chunk arrived before the handler finished")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    tx_release.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: last\n\n");
    running.stop().await;
}

fn async_stream(
    release: tokio::sync::oneshot::Receiver<()>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    futures_util::stream::unfold((0, Some(release)), |(step, release)| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(b"data: first\n\n")), (1, release))),
            1 => {
                // The last chunk waits until the client has seen the first.
                let _ = release?.await;
                Some((Ok(Bytes::from_static(b"data: last\n\n")), (2, None)))
            }
            _ => None,
        }
    })
}

#[tokio::test]
async fn json_extractor_content_types() {
    #[derive(serde::Deserialize)]
    struct Item {
        name: String,
    }
    let app = Router::new()
        .route(
            "/items",
            post(
                |callnext::extract::Json(item): callnext::extract::Json<Item>| async move {
                    item.name
                },
            ),
        )
        .route(
            "/strict",
            post(
                |callnext::extract::StrictJson(item): callnext::extract::StrictJson<Item>| async move {
                    item.name
                },
            ),
        );
    let client = TestClient::new(Stack::new().service(app.clone()));
    // As FastAPI: JSON when the body says so, else text that is no object.
    for (ct, json_status, strict_status) in [
        ("application/json", 200, 200),
        ("Application/JSON; charset=utf-8", 200, 200),
        ("application/problem+json", 200, 200),
        ("text/plain", 422, 415),
        ("application/jsonx", 422, 415),
        ("json", 422, 415),
    ] {
        for (path, status) in [("/items", json_status), ("/strict", strict_status)] {
            let res = client
                .post(path)
                .header("content-type", ct)
                .body(r#"{"name":"pen"}"#)
                .await;
            assert_eq!(res.status(), status, "{path} {ct}: {}", res.text());
        }
    }
    let res = client
        .post("/items")
        .header("content-type", "text/plain")
        .body(r#"{"name":"pen"}"#)
        .await;
    assert_eq!(
        res.text(),
        r#"{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":"{\"name\":\"pen\"}"}]}"#
    );
    // No Content-Type: not JSON (FastAPI's strict_content_type, its default; a page on another
    // site can send such a body without a preflight), unless the request says otherwise.
    let res = client.post("/items").body(r#"{"name":"pen"}"#).await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<serde_json::Value>()["detail"][0]["type"],
        "model_attributes_type"
    );
    let lax = Stack::new().on_request("lax-json", |req: &mut callnext::Request| {
        req.extensions_mut()
            .insert(callnext::extract::JsonWithoutContentType);
    });
    let lax = TestClient::new(lax.service(app));
    assert_eq!(
        lax.post("/items").body(r#"{"name":"pen"}"#).await.text(),
        "pen"
    );
    let res = client.post("/strict").body("{}").await;
    assert_eq!(res.status(), 415);
    assert_eq!(
        res.text(),
        r#"{"detail":"Expected request with `Content-Type: application/json`"}"#
    );
}

/// Starlette: a middleware wraps `receive` and raises `HTTPException` part-way through the
/// body; the endpoint reading it fails with that exception, and the client gets its status
/// and detail. Here the middleware's body stream ends with an `HttpError`, and callnext's
/// extractors answer with it (axum's own `Bytes` extractor would answer 400).
#[tokio::test]
async fn an_error_raised_by_a_wrapped_body_reaches_the_client_as_itself() {
    async fn checksum(req: Request, next: Next<'_>) -> Response {
        let (parts, body) = req.into_parts();
        let stream = futures_util::stream::unfold(Some(body), |state| async move {
            let mut body = state?;
            match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.windows(3).any(|w| w == b"bad") => Some((
                        Err(HttpError::new(
                            http::StatusCode::UNPROCESSABLE_ENTITY,
                            "Checksum mismatch",
                        )),
                        None,
                    )),
                    Ok(data) => Some((Ok(data), Some(body))),
                    Err(_) => Some((Ok(Bytes::new()), Some(body))),
                },
                Some(Err(_)) | None => None,
            }
        });
        next.run(Request::from_parts(parts, Body::from_stream(stream)))
            .await
    }
    let app = Router::new().route(
        "/items",
        post(
            |callnext::extract::Json(v): callnext::extract::Json<serde_json::Value>| async move {
                v.to_string()
            },
        ),
    );
    let client = TestClient::new(Stack::new().func(checksum).service(app));
    let ok = client
        .post("/items")
        .json(&serde_json::json!({"name": "good"}))
        .await;
    assert_eq!(
        (ok.status().as_u16(), ok.text()),
        (200, r#"{"name":"good"}"#.to_owned())
    );
    let res = client
        .post("/items")
        .json(&serde_json::json!({"name": "bad"}))
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(res.text(), r#"{"detail":"Checksum mismatch"}"#);
}
