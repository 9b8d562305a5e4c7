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

/// Twenty requests at once append to one session's list through two instances sharing Redis:
/// conflicts are retried after a random pause (no 503) and `update` re-applies each append to
/// the latest list (nothing lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_over_two_instances_lose_nothing() {
    use axum::extract::Path;
    use callnext::middleware::session::Session;
    use callnext::HttpError;

    let prefix = common::unique("appends");
    let instance = || {
        let store = RedisStore::new(Redis::open(&common::redis_url()).unwrap()).prefix(&prefix);
        let sessions = Sessions::builder()
            .secret([5u8; 64])
            .store(store)
            .build()
            .unwrap();
        let app = axum::Router::new()
            .route(
                "/items/{n}",
                axum::routing::post(|s: Session, Path(n): Path<u32>| async move {
                    s.update("items", move |items: Option<Vec<u32>>| {
                        let mut items = items.unwrap_or_default();
                        items.push(n);
                        Some(items)
                    })
                    .await?;
                    Ok::<_, HttpError>("added")
                }),
            )
            .route(
                "/items",
                axum::routing::get(|s: Session| async move {
                    let items: Vec<u32> = s.get("items").await?.unwrap_or_default();
                    Ok::<_, HttpError>(axum::Json(items))
                }),
            );
        TestClient::new(Stack::new().hook(sessions).service(app))
    };
    let (a, b) = (instance(), instance());
    let made = a.post("/items/0").send().await;
    let cookie = made
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let writes = (1..=20u32).map(|n| {
        let client = if n % 2 == 0 { a.clone() } else { b.clone() };
        let cookie = cookie.clone();
        tokio::spawn(async move {
            client
                .post(&format!("/items/{n}"))
                .header("cookie", cookie)
                .send()
                .await
                .status()
        })
    });
    let statuses: Vec<_> = futures_util::future::join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let res = b.get("/items").header("cookie", cookie).send().await;
    let mut items: Vec<u32> = res.json();
    items.sort_unstable();
    assert_eq!(items, (0..=20).collect::<Vec<_>>());
}
