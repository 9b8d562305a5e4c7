use super::*;
use crate::backends::testing::{probe, redis_url};
use crate::backends::Redis;

/// Sessions in front of a handler that writes one value.
#[cfg(feature = "sql")]
fn client(sessions: &Sessions) -> crate::TestClient<crate::StackService> {
    use axum::{routing::post, Router};
    let app = Router::new().route(
        "/",
        post(|session: Session| async move {
            session.insert("n", &1).await?;
            Ok::<_, HttpError>("ok")
        }),
    );
    crate::TestClient::new(crate::Stack::new().hook(sessions.clone()).service(app))
}

fn sessions(store: impl SessionStore) -> Sessions {
    Sessions::builder()
        .secret([5u8; 64])
        .store(store)
        .build()
        .unwrap()
}

const NONE: [(&str, u64); 4] = [
    ("store_errors_load", 0),
    ("store_errors_create", 0),
    ("store_errors_save", 0),
    ("store_errors_destroy", 0),
];

#[test]
fn sessions_in_memory_name_no_backend() {
    assert!(sessions(MemoryStore::new(10)).backends().is_empty());
    let default = Sessions::builder().secret([5u8; 64]).build().unwrap();
    assert!(default.backends().is_empty());
}

#[tokio::test]
async fn sessions_in_redis_name_it_and_the_probe_answers() {
    let url = redis_url();
    let prefix = format!("test:backends:{}:{}", std::process::id(), line!());
    let sessions = sessions(RedisStore::new(Redis::open(&url).unwrap()).prefix(prefix));
    let backends = sessions.backends();
    assert_eq!(backends.len(), 1);
    assert_eq!(backends[0].kind, "redis");
    assert_eq!(backends[0].url, crate::redact::redact_urls(&url));
    assert_eq!(probe(&backends[0]).await, Ok(()));
    assert_eq!((backends[0].counters)(), NONE);
}

#[cfg(feature = "sql")]
#[tokio::test]
async fn sessions_in_sqlite_name_the_file_and_the_probe_answers() {
    let url = crate::backends::testing::sqlite_url("sessions");
    let sessions = sessions(SqlStore::open(&url).unwrap());
    let backend = sessions.backends().remove(0);
    assert_eq!(backend.kind, "sqlite");
    assert_eq!(backend.url, url);
    // Before any request: the probe connects the store's pool.
    assert_eq!(probe(&backend).await, Ok(()));
    assert_eq!(client(&sessions).post("/").await.status(), 200);
    assert_eq!((backend.counters)(), NONE);
    let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
}

#[cfg(feature = "sql")]
#[tokio::test]
async fn sessions_in_postgres_name_it_and_the_probe_answers() {
    let url = crate::backends::testing::database_url();
    let backend = sessions(SqlStore::open(&url).unwrap()).backends().remove(0);
    assert_eq!(backend.kind, "postgres");
    assert_eq!(backend.url, crate::redact::redact_urls(&url));
    assert_eq!(probe(&backend).await, Ok(()));
    assert_eq!((backend.counters)(), NONE);
}

#[cfg(feature = "sql")]
#[tokio::test]
async fn a_postgres_that_is_down_fails_the_probe_and_its_store_errors_are_counted() {
    let port = crate::backends::testing::dead_port();
    let url = format!("postgres://postgres:secret@127.0.0.1:{port}/test");
    let sessions = sessions(SqlStore::open(&url).unwrap());
    let backend = sessions.backends().remove(0);
    assert_eq!(
        backend.url,
        format!("postgres://postgres:***@127.0.0.1:{port}/test")
    );
    let err = probe(&backend).await.unwrap_err();
    assert!(!err.is_empty() && !err.contains("secret"), "{err}");
    assert_eq!((backend.counters)(), NONE);

    // A new session is created on the way out: that write fails.
    assert_eq!(client(&sessions).post("/").await.status(), 503);
    let counter = |name| crate::backends::testing::counter(&backend, name);
    assert_eq!(counter("store_errors_create"), 1);
    assert_eq!(counter("store_errors_load"), 0);
}
