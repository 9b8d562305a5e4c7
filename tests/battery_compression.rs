//! Compression with the rest of the stack: SSE left alone and streamed, other streams
//! compressed chunk by chunk, small and already-encoded bodies untouched, and the file.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::{routing::get, Router};
use callnext::config::{Config, Registry};
use callnext::middleware::{Compression, SetRequestId};
use callnext::{Stack, TestClient};
use tokio::sync::Notify;

/// Three chunks; the second waits for `gate`, so a test can see the first arrive alone.
fn gated_stream(gate: Arc<Notify>, content_type: &'static str) -> axum::response::Response {
    let chunks = futures_util::stream::unfold(0u8, move |i| {
        let gate = Arc::clone(&gate);
        async move {
            if i == 3 {
                return None;
            }
            if i == 1 {
                gate.notified().await;
            }
            let chunk = format!("data: event {i} {}\n\n", "x".repeat(200));
            Some((
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(chunk)),
                i + 1,
            ))
        }
    });
    axum::response::IntoResponse::into_response((
        [("content-type", content_type)],
        axum::body::Body::from_stream(chunks),
    ))
}

fn app(gate: Arc<Notify>) -> Router {
    let sse_gate = Arc::clone(&gate);
    Router::new()
        .route(
            "/sse",
            get(move || {
                std::future::ready(gated_stream(Arc::clone(&sse_gate), "text/event-stream"))
            }),
        )
        .route(
            "/stream",
            get(move || std::future::ready(gated_stream(Arc::clone(&gate), "text/plain"))),
        )
        .route("/big", get(|| async { "hello world ".repeat(500) }))
        .route("/small", get(|| async { "tiny" }))
        .route(
            "/encoded",
            get(|| async {
                (
                    [("content-encoding", "gzip")],
                    vec![
                        0x1f, 0x8b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ],
                )
            }),
        )
}

fn client(gate: Arc<Notify>) -> TestClient<callnext::StackService> {
    let stack = Stack::new()
        .hook(SetRequestId::new())
        .push(Compression::new().entry());
    TestClient::new(stack.service(app(gate)))
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn sse_is_never_compressed_and_arrives_event_by_event() {
    let gate = Arc::new(Notify::new());
    let client = client(Arc::clone(&gate));
    let mut stream = client
        .get("/sse")
        .header("accept-encoding", "gzip, br, zstd")
        .stream()
        .await;
    assert_eq!(stream.headers().get("content-encoding"), None);
    assert!(stream.headers().contains_key("x-request-id"));
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next_chunk())
        .await
        .expect("the first event before the second is produced")
        .unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: event 0"));
    gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next_chunk().await {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("data: event 2"));
}

#[tokio::test]
async fn other_streams_are_compressed_chunk_by_chunk() {
    let gate = Arc::new(Notify::new());
    let client = client(Arc::clone(&gate));
    let mut stream = client
        .get("/stream")
        .header("accept-encoding", "gzip")
        .stream()
        .await;
    assert_eq!(stream.headers()["content-encoding"], "gzip");
    let mut body = tokio::time::timeout(Duration::from_secs(10), stream.next_chunk())
        .await
        .expect("compressed bytes before the second chunk is produced")
        .unwrap()
        .to_vec();
    gate.notify_one();
    while let Some(chunk) = stream.next_chunk().await {
        body.extend_from_slice(&chunk);
    }
    let text = gunzip(&body);
    assert!(
        text.starts_with("data: event 0") && text.contains("data: event 2"),
        "{text}"
    );
}

#[tokio::test]
async fn q_values_small_and_encoded_bodies() {
    let client = client(Arc::new(Notify::new()));
    let res = client
        .get("/big")
        .header("accept-encoding", "br;q=0.1, gzip;q=0.9")
        .await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    // As Starlette sends it: the whole body compressed at once, with its length.
    assert_eq!(res.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        res.header("content-length"),
        Some(res.bytes().len().to_string().as_str())
    );
    assert_eq!(gunzip(res.bytes()), "hello world ".repeat(500));
    let res = client.get("/big").await;
    assert_eq!(res.header("content-encoding"), None);
    let res = client.get("/small").header("accept-encoding", "gzip").await;
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.text(), "tiny");
    let res = client.get("/encoded").header("accept-encoding", "br").await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(res.bytes().len(), 40);
}

#[tokio::test]
async fn from_the_configuration_file() {
    let stack = Config::parse(
        "[middleware.compression]\nmin_size = \"10KB\"\nbr = false\n",
        "app.toml",
        &[],
    )
    .unwrap()
    .stack(&Registry::new())
    .unwrap();
    let client = TestClient::new(stack.service(app(Arc::new(Notify::new()))));
    // 6000 bytes is under the 10 KB minimum.
    let res = client.get("/big").header("accept-encoding", "gzip").await;
    assert_eq!(res.header("content-encoding"), None);

    let err =
        common::stack_from_config("[middleware.compression]\nmin_size = \"1MB\"\n").unwrap_err();
    assert_eq!(
        err,
        "app.toml:2: `middleware.compression.min_size`: invalid `min_size`: at most 64KiB (65535 bytes), got 1000000"
    );
}
