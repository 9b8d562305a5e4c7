//! Brute-force protection: a rate limit counting 401s in front of API-key auth lets at most its
//! quota of wrong keys reach auth, however many are sent at once (on many HTTP/1.1
//! connections, or as the streams of one HTTP/2 connection), with the memory and the Redis
//! store; the requests whose status does not count are given their charge back.

mod common;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use callnext::backends::Redis;
use callnext::middleware::auth::{Auth, SqlKeyStore};
use callnext::middleware::rate_limit::RateLimit;
use callnext::serve::Server;
use callnext::{Next, Request, Response, Stack};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const GUESSES: usize = 40;
const QUOTA: usize = 3;

/// Holds each request a while before auth sees it, so that every guess is in flight at once.
async fn slow(req: Request, next: Next<'_>) -> Response {
    tokio::time::sleep(Duration::from_millis(200)).await;
    next.run(req).await
}

async fn keys(name: &str) -> (SqlKeyStore, String) {
    let dir = std::env::temp_dir().join(format!("callnext-brute-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&path);
    let store = SqlKeyStore::open(&format!("sqlite://{}", path.display())).unwrap();
    let key = store.create("ops", &[]).await.unwrap().key;
    (store, key)
}

/// The server: a limiter of three 401s a minute per address, a pause, then auth.
async fn serve(name: &str, redis: bool) -> (common::Running, String) {
    let (store, key) = keys(name).await;
    let mut limit = RateLimit::builder()
        .limit(format!("{QUOTA}/minute"))
        .count_statuses([401]);
    if redis {
        // A store timeout a busy machine does not run out of: every decision is counted.
        limit = limit
            .redis(Redis::open(&common::redis_url()).unwrap())
            .store_timeout(std::time::Duration::from_secs(5))
            .prefix(common::unique(name));
    }
    let stack = Stack::new()
        .hook(limit.build().unwrap())
        .func(slow)
        .hook(Auth::builder().api_keys(store).build().unwrap());
    let app = Router::new().route("/private", get(|| async { "secret" }));
    (common::spawn(Server::new(), stack.service(app)).await, key)
}

/// Sends `GUESSES` requests at once with `key`; the statuses, sorted.
async fn at_once(addr: std::net::SocketAddr, http2: bool, key: &str) -> Vec<u16> {
    let client = if http2 {
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Empty<Bytes>>()
    } else {
        Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>()
    };
    let sends = (0..GUESSES).map(|_| {
        let client = client.clone();
        let req = http::Request::get(format!("http://{addr}/private"))
            .header("x-api-key", key)
            .body(Empty::new())
            .unwrap();
        async move {
            let res = client.request(req).await.unwrap();
            let version = res.version();
            let status = res.status().as_u16();
            res.into_body().collect().await.unwrap();
            (version, status)
        }
    });
    let mut statuses = Vec::new();
    for (version, status) in futures_util::future::join_all(sends).await {
        let expected = if http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(version, expected);
        statuses.push(status);
    }
    statuses.sort_unstable();
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn guesses_reach_auth_at_most_the_quota(name: &str, redis: bool, http2: bool) {
    let (running, key) = serve(name, redis).await;
    let wrong = format!("{}x", &key[..key.len() - 1]);
    let statuses = at_once(running.addr, http2, &wrong).await;
    assert_eq!(count(&statuses, 401), QUOTA, "{statuses:?}");
    assert_eq!(count(&statuses, 429), GUESSES - QUOTA, "{statuses:?}");
    // Out of failures, even the right key waits: the limiter answers before auth.
    let statuses = at_once(running.addr, http2, &key).await;
    assert_eq!(count(&statuses, 429), GUESSES, "{statuses:?}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_on_many_connections_reach_auth_at_most_the_quota() {
    guesses_reach_auth_at_most_the_quota("memory-h1", false, false).await;
    guesses_reach_auth_at_most_the_quota("redis-h1", true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_as_http2_streams_reach_auth_at_most_the_quota() {
    guesses_reach_auth_at_most_the_quota("memory-h2", false, true).await;
    guesses_reach_auth_at_most_the_quota("redis-h2", true, true).await;
}

/// One request with `key`, and its status.
async fn one(addr: std::net::SocketAddr, key: &str) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = http::Request::get(format!("http://{addr}/private"))
        .header("x-api-key", key)
        .body(Empty::new())
        .unwrap();
    client.request(req).await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_do_not_count_are_given_their_charge_back() {
    for (name, redis) in [("memory-ok", false), ("redis-ok", true)] {
        let (running, key) = serve(name, redis).await;
        // Three times the quota of successes, one after another: each charged, then given
        // back.
        for _ in 0..3 * QUOTA {
            assert_eq!(one(running.addr, &key).await, 200, "{name}");
        }
        // The failures still count from a full quota.
        let wrong = format!("{}x", &key[..key.len() - 1]);
        for expected in [401, 401, 401, 429] {
            assert_eq!(one(running.addr, &wrong).await, expected, "{name}");
        }
        running.stop().await;
    }
}
