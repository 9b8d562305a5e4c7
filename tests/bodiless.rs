//! Responses that must not have a body have none, whatever produced them: 1xx, 204, 304 and
//! every answer to HEAD, in process and over a real socket.

mod common;

use axum::{routing::get, Router};
use callnext::middleware::SetRequestId;
use callnext::serve::Server;
use callnext::{HttpError, Stack, TestClient};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn app() -> Router {
    Router::new()
        .route(
            "/no-content",
            get(|| async { Err::<(), _>(HttpError::new(StatusCode::NO_CONTENT, "nothing here")) }),
        )
        .route(
            "/not-modified",
            get(|| async { Err::<(), _>(HttpError::new(StatusCode::NOT_MODIFIED, "same")) }),
        )
        .route(
            "/handler-204",
            get(|| async { (StatusCode::NO_CONTENT, "body the handler set") }),
        )
        .route(
            "/json",
            get(|| async { axum::Json(serde_json::json!({"a": 1})) }),
        )
}

#[tokio::test]
async fn errors_and_handlers_with_204_or_304_have_no_body() {
    let client = TestClient::new(Stack::new().hook(SetRequestId::new()).service(app()));
    for path in ["/no-content", "/not-modified", "/handler-204"] {
        let res = client.get(path).await;
        assert!(res.bytes().is_empty(), "{path}: {:?}", res.text());
        assert!(res.header("x-request-id").is_some(), "{path}");
    }
    let res = client.get("/no-content").await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.header("content-type"), None);
    assert_eq!(res.header("content-length"), None);
}

#[tokio::test]
async fn head_answers_announce_the_length_and_send_no_body() {
    let client = TestClient::new(Stack::new().service(app()));
    let res = client.head("/json").await;
    assert_eq!(res.status(), 200);
    assert!(res.bytes().is_empty());
    assert_eq!(res.header("content-length"), Some("7"));

    // Over a socket: a 204 error and a HEAD on one keep-alive connection, nothing left over.
    let running = common::spawn(Server::new(), Stack::new().service(app())).await;
    let mut stream = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /no-content HTTP/1.1\r\nHost: x\r\n\r\nHEAD /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    let (first, second) = text.split_once("\r\n\r\n").unwrap();
    assert!(first.starts_with("http/1.1 204"), "{text}");
    assert!(second.starts_with("http/1.1 200"), "{text}");
    assert!(second.contains("content-length: 7"), "{text}");
    assert!(
        second.ends_with("\r\n\r\n"),
        "no body after the HEAD answer: {text}"
    );
    running.stop().await;
}
