//! Every store stalled, through the real server: a Redis of the test's own under SIGSTOP,
//! PostgreSQL behind a relay that accepts and never forwards. Each request is answered within
//! the store's timeout plus a margin, as its battery's policy says, and the battery recovers
//! once the store answers again.

mod common;

use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use callnext::backends::Redis;
use callnext::middleware::auth::{Auth, SqlKeyStore};
use callnext::middleware::rate_limit::{OnStoreError, RateLimit};
use callnext::middleware::session::{RedisStore, Session, SqlStore};
use callnext::middleware::Sessions;
use callnext::serve::Server;
use callnext::{HttpError, Stack};

/// The store's timeout in these tests; a stalled request must be answered within it plus
/// this margin (a busy machine), where before it waited until the store woke.
const TIMEOUT: Duration = Duration::from_millis(300);
const MARGIN: Duration = Duration::from_secs(8);

fn app() -> Router {
    Router::new()
        .route(
            "/add",
            post(|session: Session| async move {
                let n: u64 = session.get("n").await?.unwrap_or(0);
                session.insert("n", &(n + 1)).await?;
                Ok::<_, HttpError>((n + 1).to_string())
            }),
        )
        .route("/items", get(|| async { "items" }))
}

/// A request over a real socket: its status and how long it took.
async fn timed(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (u16, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = key.map_or(String::new(), |k| format!("X-API-Key: {k}\r\n"));
    conn.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(60), conn.read_to_string(&mut out))
        .await
        .expect("answered before the store woke")
        .unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    (status, started.elapsed())
}

/// Requests until one gets `status` (the store answering again).
async fn until(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    status: u16,
) {
    for _ in 0..100 {
        if timed(addr, method, path, key).await.0 == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never answered {status}");
}

async fn stalled_then_recovered(
    stall: impl Fn(),
    unstall: impl Fn(),
    stack: Stack,
    path: &str,
    key: Option<&str>,
    method: &str,
) {
    let running = common::spawn(Server::new(), stack.service(app())).await;
    let addr = running.addr;
    // Up first (the first call may open the store's connections, which on a busy machine can
    // take longer than the store's timeout).
    until(addr, method, path, key, 200).await;
    stall();
    // Past the API-key cache's 1 ms: the next requests ask the store.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..4 {
        let (status, took) = timed(addr, method, path, key).await;
        assert_eq!(status, 503, "{path}");
        assert!(took < TIMEOUT + MARGIN, "{path} took {took:?}");
    }
    unstall();
    until(addr, method, path, key, 200).await;
    running.stop().await;
}

fn sessions(store: impl callnext::middleware::session::SessionStore) -> Sessions {
    Sessions::builder()
        .secret([9u8; 64])
        .store(store)
        .store_timeout(TIMEOUT)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_a_stalled_redis_are_503_within_the_timeout_and_recover() {
    let redis = common::OwnRedis::start().await;
    let store = RedisStore::new(Redis::open(&redis.url()).unwrap()).prefix(common::unique("stall"));
    let stack = Stack::new().hook(sessions(store));
    stalled_then_recovered(
        || redis.stall(),
        || redis.unstall(),
        stack,
        "/add",
        None,
        "POST",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_a_stalled_postgres_are_503_within_the_timeout_and_recover() {
    let relay = common::Relay::start("127.0.0.1:5432".to_owned()).await;
    let store = SqlStore::open(&relay.url_through(&common::database_url())).unwrap();
    let stack = Stack::new().hook(sessions(store));
    stalled_then_recovered(
        || relay.stall(),
        || relay.unstall(),
        stack,
        "/add",
        None,
        "POST",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_on_a_stalled_postgres_are_503_within_the_timeout_and_recover() {
    let relay = common::Relay::start("127.0.0.1:5432".to_owned()).await;
    let keys = SqlKeyStore::open(&relay.url_through(&common::database_url())).unwrap();
    let made = keys.create("stall", &[]).await.unwrap();
    let auth = Auth::builder()
        .api_keys(keys)
        // Every request asks the database.
        .cache_ttl(Duration::from_millis(1))
        .store_timeout(TIMEOUT)
        .build()
        .unwrap();
    let stack = Stack::new().hook(auth);
    stalled_then_recovered(
        || relay.stall(),
        || relay.unstall(),
        stack,
        "/items",
        Some(&made.key),
        "GET",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_on_a_stalled_redis_follows_its_policy_and_recovers() {
    let redis = common::OwnRedis::start().await;
    let limit = RateLimit::builder()
        .limit("1000/minute")
        .redis(Redis::open(&redis.url()).unwrap())
        .prefix(common::unique("stall"))
        .store_timeout(TIMEOUT)
        .on_store_error(OnStoreError::Closed)
        .build()
        .unwrap();
    let stack = Stack::new().hook(limit);
    stalled_then_recovered(
        || redis.stall(),
        || redis.unstall(),
        stack,
        "/items",
        None,
        "GET",
    )
    .await;
}
