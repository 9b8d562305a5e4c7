//! Timeout, concurrency limit and body limit: their answers, how they hold up with the other
//! batteries, bodies over real sockets, and the configuration file.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::{routing::get, routing::post, Router};
use callnext::middleware::limit::{BodyLimit, ConcurrencyLimit};
use callnext::middleware::{SetRequestId, Timeout};
use callnext::serve::Server;
use callnext::{Stack, TestClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

fn echo() -> Router {
    Router::new().route(
        "/",
        post(|body: String| async move { format!("got {}", body.len()) }),
    )
}

async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn body_limit_over_a_real_socket_by_length_and_mid_stream() {
    let stack = Stack::new().hook(BodyLimit::new(64).unwrap());
    let running = common::spawn(Server::new(), stack.service(echo())).await;

    // Within the limit, chunked.
    let ok = raw(
        running.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("got 5"),
        "{ok}"
    );

    // Content-Length over the limit: refused before the body is read.
    let declared = raw(
        running.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n",
    )
    .await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(
        declared.ends_with(r#"{"detail":"Request body too large"}"#),
        "{declared}"
    );

    // A chunked body that crosses the limit in its third chunk.
    let mut chunked =
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"1e\r\n");
        chunked.extend_from_slice(&[b'a'; 30]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let crossed = raw(running.addr, &chunked).await;
    assert!(crossed.starts_with("HTTP/1.1 413"), "{crossed}");
    assert!(
        crossed.ends_with(r#"{"detail":"Request body too large"}"#),
        "{crossed}"
    );
    assert!(
        !crossed.contains("got "),
        "the handler never saw a truncated body"
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_request_is_a_503_with_the_request_id() {
    let app = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            "late"
        }),
    );
    let stack = Stack::new()
        .hook(SetRequestId::new())
        .middleware(Timeout::new(Duration::from_secs(30)));
    let res = TestClient::new(stack.service(app))
        .get("/slow")
        .header("x-request-id", "t-1")
        .await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.header("retry-after"), Some("1"));
    assert_eq!(res.header("x-request-id"), Some("t-1"));
    assert_eq!(
        res.text(),
        r#"{"detail":"Request timed out","request_id":"t-1"}"#
    );
}

#[tokio::test]
async fn a_place_is_held_until_the_streamed_body_ends() {
    let gate = Arc::new(Notify::new());
    let app = {
        let gate = Arc::clone(&gate);
        Router::new()
            .route(
                "/stream",
                get(move || {
                    let gate = Arc::clone(&gate);
                    async move {
                        let chunks = futures_util::stream::unfold(0u8, move |i| {
                            let gate = Arc::clone(&gate);
                            async move {
                                if i == 2 {
                                    return None;
                                }
                                if i == 1 {
                                    gate.notified().await;
                                }
                                Some((
                                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from("x")),
                                    i + 1,
                                ))
                            }
                        });
                        axum::body::Body::from_stream(chunks)
                    }
                }),
            )
            .route("/", get(|| async { "ok" }))
    };
    let limit = ConcurrencyLimit::new(1).unwrap();
    let client = TestClient::new(Stack::new().middleware(limit.clone()).service(app));
    let mut stream = client.get("/stream").stream().await;
    assert_eq!(stream.next_chunk().await.as_deref(), Some(&b"x"[..]));
    assert_eq!(limit.in_flight(), 1);
    // The stream's place is still taken: the next request is shed.
    let shed = client.get("/").await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.text(), r#"{"detail":"Service Unavailable"}"#);
    assert_eq!(shed.header("retry-after"), Some("1"));
    gate.notify_one();
    while stream.next_chunk().await.is_some() {}
    drop(stream);
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(client.get("/").await.text(), "ok");
}

#[tokio::test]
async fn from_the_configuration_file() {
    let stack = common::stack_from_config(
        "[middleware.body_limit]\nmax = \"1KB\"\n\n[middleware.concurrency]\nmax = 10\nqueue = 5\n\n[middleware.timeout]\nafter = \"5s\"\nstatus = 504\n",
    )
    .unwrap();
    let names: Vec<_> = stack.describe().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["timeout", "concurrency", "body_limit"]);
    let client = TestClient::new(stack.service(echo()));
    assert_eq!(
        client.post("/").body("a".repeat(1000)).await.text(),
        "got 1000"
    );
    assert_eq!(client.post("/").body("a".repeat(1001)).await.status(), 413);

    let mistakes = [
        (
            "[middleware.timeout]\nstatus = 500\n",
            "app.toml:2: `middleware.timeout.status`: invalid `status`: expected 503 or 504, got 500",
        ),
        (
            "[middleware.timeout]\nafter = \"0s\"\n",
            "app.toml:2: `middleware.timeout.after`: must be greater than zero",
        ),
        (
            "[middleware.concurrency]\nmax = 0\n",
            "app.toml:2: `middleware.concurrency.max`: invalid `max`: must be at least 1 (every request would be shed)",
        ),
        (
            "[middleware.body_limit]\nmax = \"huge\"\n",
            "app.toml:2: `middleware.body_limit.max`: expected a size such as \"1MB\" or \"64KiB\", got \"huge\"",
        ),
    ];
    for (text, expected) in mistakes {
        assert_eq!(
            common::stack_from_config(text).err().as_deref(),
            Some(expected),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_places_taken_are_a_gauge_in_the_metrics() {
    let gate = Arc::new(Notify::new());
    let metrics = callnext::metrics::Metrics::new();
    let app = {
        let gate = Arc::clone(&gate);
        Router::new()
            .route(
                "/held",
                get(move || {
                    let gate = Arc::clone(&gate);
                    async move {
                        gate.notified().await;
                        "done"
                    }
                }),
            )
            .route("/metrics", metrics.route())
    };
    let stack = Stack::new()
        .middleware(ConcurrencyLimit::new(10).unwrap())
        .metrics(&metrics);
    let client = TestClient::new(stack.service(app));
    let held = tokio::spawn(client.get("/held").send());
    // The scrape itself holds a place too, so one held request shows as 2.
    let gauge = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(
                    "callnext_concurrency_in_flight{stack=\"main\",middleware=\"concurrency\"}",
                )
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = client.get("/metrics").await.text();
        if gauge(&text).as_deref() == Some("2") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    assert_eq!(held.await.unwrap().text(), "done");
    assert_eq!(
        gauge(&client.get("/metrics").await.text()).as_deref(),
        Some("1")
    );
}
