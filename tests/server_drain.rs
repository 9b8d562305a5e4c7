//! Shutdown over real sockets: readiness turns off, responses sent while draining close their
//! keep-alive connections, and what outlives the drain timeout is cut.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use callnext::admin::{Admin, Readiness};
use callnext::serve::Server;
use callnext::Stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// `/wait`: tells the test it is running, then answers when released.
fn waiting_app(entered: mpsc::UnboundedSender<()>, release: Arc<Notify>) -> Router {
    Router::new().route(
        "/wait",
        get(move || {
            let entered = entered.clone();
            let release = Arc::clone(&release);
            async move {
                let _ = entered.send(());
                release.notified().await;
                "released"
            }
        }),
    )
}

async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn responses_sent_while_draining_close_keep_alive_connections() {
    let readiness = Readiness::new();
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let app = waiting_app(entered_tx, Arc::clone(&release))
        .merge(Admin::new().readiness(&readiness).router());
    let server = Server::new()
        .readiness(&readiness)
        .drain_timeout(Duration::from_secs(30));
    let running = common::spawn(server, Stack::new().service(app)).await;

    // Ready while serving, on a keep-alive connection.
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    // A request in flight on it when the signal comes.
    stream
        .write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    entered.recv().await.unwrap();
    let addr = running.addr;
    let stopping = tokio::spawn(running.stop());
    let deadline = Instant::now() + Duration::from_secs(10);
    while readiness.is_ready() {
        assert!(Instant::now() < deadline, "readiness never turned off");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // No longer accepting.
    assert!(TcpStream::connect(addr).await.is_err());

    release.notify_one();
    let text = read_until_closed(&mut stream).await.to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.ends_with("released"), "{text}");
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_request_longer_than_the_drain_timeout_is_cut_and_serve_returns() {
    let logs = common::Logs::capture();
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new()); // never released
    let app = waiting_app(entered_tx, release);
    let drain = Duration::from_millis(400);
    let running = common::spawn(
        Server::new().drain_timeout(drain),
        Stack::new().service(app),
    )
    .await;
    let addr = running.addr;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    entered.recv().await.unwrap();

    let start = Instant::now();
    running.stop().await;
    let took = start.elapsed();
    assert!(took >= drain, "returned before the drain timeout: {took:?}");
    // Bounded (a busy machine adds its scheduling to the drain, never a wait on the client).
    assert!(
        took < drain + Duration::from_secs(5),
        "serve returned {took:?} after the signal"
    );
    // The cut connection is closed without a response.
    assert_eq!(read_until_closed(&mut stream).await, "");

    let listening = addr.to_string();
    let at_signal = logs.lines_with(&listening);
    assert!(
        at_signal.iter().any(|l| l.contains("in_flight_requests=1")),
        "{at_signal:?}"
    );
    let cut = logs.lines_with("drain timeout reached");
    assert!(
        cut.iter()
            .any(|l| l.contains("cut_requests=1") && l.contains("cut_connections=1")),
        "{cut:?}"
    );
}

#[tokio::test]
async fn http2_connections_finish_their_streams_and_get_a_goaway() {
    let readiness = Readiness::new();
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let app = waiting_app(entered_tx, Arc::clone(&release));
    let server = Server::new()
        .readiness(&readiness)
        .drain_timeout(Duration::from_secs(30));
    let running = common::spawn(server, Stack::new().service(app)).await;
    let stream = TcpStream::connect(running.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/wait", running.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::spawn(sender.send_request(req));
    entered.recv().await.unwrap();

    let stopping = tokio::spawn(running.stop());
    let deadline = Instant::now() + Duration::from_secs(10);
    while readiness.is_ready() {
        assert!(Instant::now() < deadline, "readiness never turned off");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.notify_one();
    let res = response.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"released");
    // The server's GOAWAY ends the client's connection cleanly.
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the connection ends after the GOAWAY")
        .unwrap()
        .unwrap();
    stopping.await.unwrap();
}
