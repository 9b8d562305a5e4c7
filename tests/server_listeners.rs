//! The server's listeners and connections over real sockets: the client address on every
//! request, `SO_REUSEPORT`, Unix sockets, and HTTP/2's stream limit.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{routing::get, Router};
use bytes::Bytes;
use callnext::serve::Server;
use callnext::{ClientIp, Stack, TrustedProxies};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn whoami() -> Router {
    Router::new()
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/client",
            get(|req: callnext::Request| async move {
                ClientIp::of(&req).map_or_else(|| "none".to_owned(), |c| c.to_string())
            }),
        )
}

async fn get_with<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    extra: &str,
) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("a response")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn body_of(addr: SocketAddr, path: &str, extra: &str) -> String {
    let text = get_with(TcpStream::connect(addr).await.unwrap(), path, extra).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split("\r\n\r\n").nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn requests_carry_the_peer_and_a_client_ip_no_header_can_choose() {
    let running = common::spawn(Server::new(), Stack::new().service(whoami())).await;
    let local = TcpStream::connect(running.addr).await.unwrap();
    let local_port = local.local_addr().unwrap().port();
    let text = get_with(local, "/peer", "").await;
    assert!(text.ends_with(&format!("127.0.0.1:{local_port}")), "{text}");
    // No trusted proxy: the header is the client's own word and is ignored.
    let spoofed = "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n";
    assert_eq!(body_of(running.addr, "/client", spoofed).await, "127.0.0.1");
    running.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_s_rightmost_entry_is_the_client() {
    let stack = Stack::new().trusted_proxies(TrustedProxies::parse(["127.0.0.0/8"]).unwrap());
    let running = common::spawn(Server::new(), stack.service(whoami())).await;
    let forwarded = "X-Forwarded-For: 6.6.6.6, 203.0.113.50, 127.0.0.9\r\n";
    assert_eq!(
        body_of(running.addr, "/client", forwarded).await,
        "203.0.113.50"
    );
    assert_eq!(body_of(running.addr, "/client", "").await, "127.0.0.1");
    running.stop().await;
}

#[tokio::test]
async fn reuse_port_lets_two_servers_share_a_port() {
    let first = Server::new()
        .reuse_port(true)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = first.local_addr().unwrap();
    let second = Server::new().reuse_port(true).bind(addr).await;
    assert!(second.is_ok(), "{second:?}");
    let third = Server::new().bind(addr).await.unwrap_err();
    assert!(
        third
            .to_string()
            .starts_with(&format!("cannot bind {addr}: ")),
        "{third}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_serving_with_a_trusted_local_proxy() {
    let dir = std::env::temp_dir().join(format!("callnext-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    // A file left by a server that is gone is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let stack = Stack::new().trusted_proxies(TrustedProxies::parse(["unix"]).unwrap());
    let bound = Server::new().bind_unix(&path).await.unwrap();
    assert_eq!(bound.url(), format!("unix:{}", path.display()));
    // A live one is not.
    let taken = Server::new().bind_unix(&path).await.unwrap_err();
    assert!(
        taken.to_string().contains("another server is listening"),
        "{taken}"
    );

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(stack.service(whoami()), async move {
        let _ = rx.await;
    }));
    let connect = || tokio::net::UnixStream::connect(&path);
    let text = get_with(
        connect().await.unwrap(),
        "/client",
        "X-Forwarded-For: 203.0.113.8\r\n",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("203.0.113.8"),
        "{text}"
    );
    // Without the header there is no client address to give.
    let text = get_with(connect().await.unwrap(), "/client", "").await;
    assert!(text.ends_with("none"), "{text}");
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed on shutdown");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Most requests running at once over one HTTP/2 connection, with this server stream limit.
async fn h2_peak_concurrency(max_streams: u32) -> usize {
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let app = {
        let (current, peak) = (Arc::clone(&current), Arc::clone(&peak));
        Router::new().route(
            "/",
            get(move || {
                let (current, peak) = (Arc::clone(&current), Arc::clone(&peak));
                async move {
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    current.fetch_sub(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        )
    };
    let server = Server::new().max_concurrent_streams(max_streams);
    let running = common::spawn(server, Stack::new().service(app)).await;
    let stream = TcpStream::connect(running.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let url = format!("http://{}/", running.addr);
    let request = |mut sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>| {
        let url = url.clone();
        async move {
            sender.ready().await.unwrap();
            let req = http::Request::get(url).body(Empty::<Bytes>::new()).unwrap();
            let res = sender.send_request(req).await.unwrap();
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.unwrap();
        }
    };
    // The first answer comes after the server's SETTINGS: the client then knows the limit
    // (streams opened beyond it before that are refused with REFUSED_STREAM).
    request(sender.clone()).await;
    peak.store(0, Ordering::SeqCst);
    futures_util::future::join_all((0..3).map(|_| request(sender.clone()))).await;
    running.stop().await;
    peak.load(Ordering::SeqCst)
}

#[tokio::test]
async fn http2_max_concurrent_streams_is_enforced() {
    assert_eq!(h2_peak_concurrency(1).await, 1);
    assert!(h2_peak_concurrency(8).await > 1);
}

/// Starlette's handler that waits and asks `await request.is_disconnected()`: here a client
/// that gives up (closes its connection) while its HTTP/1.1 request is in flight cancels the
/// handler at its next `.await` (hyper drops the request's future), so the work stops without
/// asking; work spawned off the request learns it with `Disconnect::wait`.
#[tokio::test]
async fn a_client_that_gives_up_cancels_its_waiting_handler() {
    use callnext::serve::Disconnect;
    /// Says whether the handler got past its wait when dropped.
    struct Finish(
        tokio::sync::mpsc::UnboundedSender<(&'static str, bool)>,
        bool,
    );
    impl Drop for Finish {
        fn drop(&mut self) {
            let _ = self.0.send(("handler", self.1));
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(&'static str, bool)>();
    let app = Router::new().route(
        "/slow",
        get(move |disconnect: Disconnect| {
            let tx = tx.clone();
            async move {
                let spawned = tx.clone();
                let watcher = disconnect.clone();
                tokio::spawn(async move {
                    watcher.wait().await;
                    let _ = spawned.send(("spawned", watcher.is_disconnected()));
                });
                let _ = tx.send(("started", disconnect.is_disconnected()));
                let mut finish = Finish(tx, false);
                tokio::time::sleep(Duration::from_secs(120)).await;
                finish.1 = true;
                "too late"
            }
        }),
    );
    let running = common::spawn(Server::new(), Stack::new().service(app)).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Running, with its client there.
    let started = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the handler runs")
        .unwrap();
    assert_eq!(started, ("started", false));
    drop(stream);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("the client's leaving is seen");
        seen.push(event.unwrap());
    }
    seen.sort_unstable();
    // The handler was dropped in its wait; the spawned work saw the disconnect.
    assert_eq!(seen, [("handler", false), ("spawned", true)]);
    running.stop().await;
}

#[tokio::test]
async fn work_can_learn_that_the_client_has_gone() {
    use callnext::serve::Disconnect;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, bool)>();
    let app = Router::new().route(
        "/detach",
        get(move |disconnect: Disconnect| {
            let tx = tx.clone();
            async move {
                let during = disconnect.is_disconnected();
                // Work that outlives the response: it stops when the client leaves.
                tokio::spawn(async move {
                    disconnect.wait().await;
                    let _ = tx.send((during, disconnect.is_disconnected()));
                });
                "detached"
            }
        }),
    );
    let running = common::spawn(Server::new(), Stack::new().service(app)).await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /detach HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("detached"));
    drop(stream);
    let (during, after) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the wait ends when the client leaves")
        .unwrap();
    assert!(!during);
    assert!(after);
    running.stop().await;

    // Outside callnext's server the client never "leaves".
    let never = Disconnect::default();
    assert!(!never.is_disconnected());
}
