//! Sessions in Redis (127.0.0.1:6379 unless `REDIS_URL` says otherwise): the shared
//! behavioural suite, each test under a key prefix of its own; and a Redis that is down is a
//! 503, never an empty session.

mod common;
mod session_suite;

use callnext::backends::Redis;
use callnext::middleware::session::{RedisStore, Sessions};
use callnext::{Stack, TestClient};

fn store(name: &str) -> RedisStore {
    RedisStore::new(Redis::open(&common::redis_url()).unwrap()).prefix(common::unique(name))
}

#[tokio::test]
async fn untouched_requests_cost_no_store_call_and_get_no_cookie() {
    session_suite::untouched_requests_cost_no_store_call_and_get_no_cookie(store("lazy")).await;
}

#[tokio::test]
async fn the_cookie_and_tampered_or_unknown_ids() {
    session_suite::the_cookie_and_tampered_or_unknown_ids(store("cookie")).await;
}

#[tokio::test]
async fn an_idle_session_expires() {
    session_suite::an_idle_session_expires(store("idle")).await;
}

#[tokio::test]
async fn cycle_id_keeps_the_data_and_ends_the_old_id() {
    session_suite::cycle_id_keeps_the_data_and_ends_the_old_id(store("cycle")).await;
}

#[tokio::test]
async fn a_logout_stays_a_logout_against_a_late_writer() {
    session_suite::a_logout_stays_a_logout_against_a_late_writer(store("logout")).await;
}

#[tokio::test]
async fn concurrent_writers_to_different_keys_are_both_kept() {
    session_suite::concurrent_writers_to_different_keys_are_both_kept(store("merge")).await;
}

#[tokio::test]
async fn a_redis_that_is_down_is_a_503() {
    let mut own = common::OwnRedis::start().await;
    let store = RedisStore::new(Redis::open(&own.url()).unwrap());
    let sessions = Sessions::builder()
        .secret([3u8; 64])
        .store(store)
        .build()
        .unwrap();
    let metrics = callnext::metrics::Metrics::new();
    let stack = Stack::new()
        .name("sessions_down")
        .metrics(&metrics)
        .hook(sessions);
    let client = TestClient::new(stack.service(session_suite::writer()));
    let made = client.post("/").await;
    assert_eq!(made.status(), 200);
    let cookie = made
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    own.kill();
    let res = client.post("/").header("cookie", cookie).send().await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.text(), r#"{"detail":"Service Unavailable"}"#);
    // The failed load is counted, and every store call timed.
    let text = metrics.render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("callnext_session_store_errors_total{")
                && l.contains("op=\"load\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("callnext_session_store_seconds_count{") && !l.ends_with(" 0")),
        "{text}"
    );
}
