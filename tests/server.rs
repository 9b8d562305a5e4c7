//! The server over real sockets: HTTP/1.1, h2c, bad input, limits, graceful shutdown, and the
//! binary's start-up and exit.

mod common;

use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use bytes::Bytes;
use callnext::serve::Server;
use callnext::Stack;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "slow done"
        }),
    )
}

async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn http1_and_h2c() {
    let running = common::spawn(Server::new(), Stack::new().service(app())).await;
    let res = common::get(&running.url("/")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "ok");

    let h2 = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let res = h2.get(running.url("/").parse().unwrap()).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let res = h2
        .get(running.url("/missing").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"detail":"Not Found"}"#);
    running.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_lives() {
    let running = common::spawn(Server::new(), Stack::new().service(app())).await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let reply = raw(running.addr, garbage).await;
        assert!(
            reply.is_empty()
                || reply.starts_with("HTTP/1.1 400")
                || reply.starts_with("HTTP/1.1 505"),
            "unexpected reply to {garbage:?}: {reply}"
        );
    }
    assert_eq!(common::get(&running.url("/")).await.status, 200);
    running.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let server = Server::new().max_header_bytes(16 * 1024);
    let running = common::spawn(server, Stack::new().service(app())).await;
    let big = "a".repeat(64 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let reply = raw(running.addr, request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert_eq!(common::get(&running.url("/")).await.status, 200);
    running.stop().await;
}

#[tokio::test]
async fn slow_header_senders_are_cut_off() {
    // The keep-alive timeout is long: a head that began arriving is cut by the header one.
    let server = Server::new()
        .header_read_timeout(Duration::from_millis(300))
        .keep_alive_timeout(Duration::from_secs(30));
    let running = common::spawn(server, Stack::new().service(app())).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("connection closed by the header timeout")
        .ok();
    assert!(start.elapsed() < Duration::from_secs(4));
    running.stop().await;
}

/// Reads one whole HTTP/1.1 response (head and `Content-Length` body) from a kept-alive stream.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed mid-response: {out:?}");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .expect("content-length");
            if out.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_keep_alive_timeout() {
    // The header-read timeout is long: an idle connection is closed by the keep-alive one.
    let server = Server::new()
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_millis(300));
    let running = common::spawn(server, Stack::new().service(app())).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    // Timed from before the request: the server's keep-alive timer starts after its answer,
    // so the lower bound holds however late this side reads the answer.
    let idle_from = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("idle connection closed")
        .ok();
    let idle = idle_from.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    // At least one timeout; well before the header-read timeout, with slack for a loaded
    // machine.
    assert!(idle >= Duration::from_millis(300), "closed after {idle:?}");
    assert!(idle < Duration::from_secs(10), "closed after {idle:?}");
    running.stop().await;
}

#[tokio::test]
async fn requests_being_answered_outlive_the_header_timeout() {
    let app = app().route(
        "/stream",
        get(|| async {
            let chunks = futures_util::stream::unfold(0u8, |i| async move {
                if i == 4 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'a' + i])),
                    i + 1,
                ))
            });
            axum::body::Body::from_stream(chunks)
        }),
    );
    let server = Server::new().header_read_timeout(Duration::from_millis(200));
    let running = common::spawn(server, Stack::new().service(app)).await;

    // A handler that takes 2.5 timeouts to answer.
    let res = common::get(&running.url("/slow")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, "slow done".as_bytes());

    // A body streamed over 1 s (5 timeouts), chunk by chunk.
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("the stream ends")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("1\r\nd\r\n0\r\n\r\n"), "{text}");

    // A keep-alive connection that sends a request every 0.6 timeouts stays open past 4 of them.
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    for _ in 0..7 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    running.stop().await;
}

#[tokio::test]
async fn max_connections_queues_the_rest() {
    let server = Server::new().max_connections(1);
    let running = common::spawn(server, Stack::new().service(app())).await;
    // The first connection holds the only slot: it is sending a request head (a connection
    // that is idle would give its slot up to the next client).
    let mut first = TcpStream::connect(running.addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    first.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // The second is accepted by the kernel but not served while the first stays open.
    let url = running.url("/");
    let second = tokio::spawn(async move { common::get(&url).await.status });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "second connection was served beyond the limit"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    running.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    // The handler says when it has the request, and when it is done with it: the shutdown
    // starts once the request is in flight and must not end before the handler has.
    let entered = std::sync::Arc::new(tokio::sync::Notify::new());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = Router::new().route(
        "/slow",
        get({
            let (entered, done) = (entered.clone(), done.clone());
            || async move {
                entered.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                "slow done"
            }
        }),
    );
    let running = common::spawn(
        Server::new().drain_timeout(Duration::from_secs(5)),
        Stack::new().service(app),
    )
    .await;
    let url = running.url("/slow");
    let in_flight = tokio::spawn(async move { common::get(&url).await });
    entered.notified().await;
    let addr = running.addr;
    running.stop().await;
    assert!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        "shutdown waited for the request"
    );
    let res = in_flight.await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "slow done");
    // No longer accepting.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn drain_timeout_bounds_shutdown() {
    let app = Router::new().route(
        "/forever",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "never"
        }),
    );
    let running = common::spawn(
        Server::new().drain_timeout(Duration::from_millis(300)),
        Stack::new().service(app),
    )
    .await;
    let url = running.url("/forever");
    let _stuck = tokio::spawn(async move { common::get(&url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    running.stop().await;
    assert!(start.elapsed() < Duration::from_secs(3));
}
