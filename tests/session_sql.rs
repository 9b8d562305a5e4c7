//! Sessions in SQL: the shared behavioural suite against a SQLite file the test creates and
//! against PostgreSQL (127.0.0.1:5432, database `test`, unless `DATABASE_URL` says
//! otherwise); expiry on real time; a database that is down is a 503.

mod common;
mod session_suite;

use callnext::middleware::session::{Data, Record, SessionStore, Sessions, SqlStore};
use callnext::{Stack, TestClient};

fn sqlite(name: &str) -> SqlStore {
    let dir = std::env::temp_dir().join(format!("callnext-sql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&path);
    SqlStore::open(&format!("sqlite://{}", path.display())).unwrap()
}

fn postgres() -> SqlStore {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    SqlStore::open(&url).unwrap()
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    session_suite::$name(sqlite(stringify!($name))).await;
                }
            )*
        }
        mod on_postgres {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    session_suite::$name(postgres()).await;
                }
            )*
        }
        /// Through PgBouncer in transaction mode (`pgbouncer=true`): each transaction may
        /// land on another server connection, so no prepared statement may outlive one.
        mod on_pgbouncer {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let bouncer = common::OwnPgBouncer::start().await;
                    session_suite::$name(SqlStore::open(&bouncer.url()).unwrap()).await;
                }
            )*
        }
    };
}

suite!(
    untouched_requests_cost_no_store_call_and_get_no_cookie,
    the_cookie_and_tampered_or_unknown_ids,
    cycle_id_keeps_the_data_and_ends_the_old_id,
    a_logout_stays_a_logout_against_a_late_writer,
    concurrent_writers_to_different_keys_are_both_kept,
);

#[tokio::test]
async fn an_idle_session_expires() {
    session_suite::an_idle_session_expires(sqlite("idle")).await;
    session_suite::an_idle_session_expires(postgres()).await;
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_a_503() {
    // Nothing listens on port 1.
    let store = SqlStore::open("postgres://postgres@127.0.0.1:1/test").unwrap();
    let sessions = Sessions::builder()
        .secret([6u8; 64])
        .store(store)
        .build()
        .unwrap();
    let client = TestClient::new(Stack::new().hook(sessions).service(session_suite::writer()));
    let res = client.post("/").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.text(), r#"{"detail":"Service Unavailable"}"#);
}

fn epoch_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(now.unwrap().as_millis()).unwrap()
}

/// Expired sessions and tombstones are deleted in bounded statements until none is left;
/// live ones stay.
#[tokio::test]
async fn the_sweeper_deletes_expired_rows_and_keeps_live_ones() {
    let dir = std::env::temp_dir().join(format!("callnext-sql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sweep.db");
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}", path.display());
    let store = SqlStore::open(&url).unwrap();
    let now = epoch_ms();
    let expired = Record::new(Data::new(), now - 60_000, now - 1_000);
    let live = Record::new(Data::new(), now, now + 3_600_000);
    // More than one statement's worth (1,000), so the sweep takes several.
    for i in 0..2_500 {
        assert!(store.create(&format!("old{i}"), &expired).await.unwrap());
    }
    for i in 0..10 {
        assert!(store.create(&format!("new{i}"), &live).await.unwrap());
    }
    store.destroy("new9", now - 1).await.unwrap(); // a tombstone already past its time
    assert_eq!(store.sweep().await.unwrap(), 2_501);
    assert_eq!(store.sweep().await.unwrap(), 0);
    for i in 0..9 {
        assert!(store.load(&format!("new{i}")).await.unwrap().is_some());
    }
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM callnext_sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 9);

    // PostgreSQL, shared with other tests: at least this test's own expired rows go.
    let store = postgres();
    let tag = format!("sweep{}-{}", std::process::id(), now);
    for i in 0..5 {
        assert!(store.create(&format!("{tag}-{i}"), &expired).await.unwrap());
    }
    assert!(store.create(&format!("{tag}-live"), &live).await.unwrap());
    assert!(store.sweep().await.unwrap() >= 5);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM callnext_sessions WHERE id LIKE $1")
        .bind(format!("{tag}-%"))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, [format!("{tag}-live")]);
}

/// Stacks built from one registry (a configuration reload builds a second beside the first)
/// share one session store per URL: one pool, not one per stack.
#[tokio::test]
async fn stacks_built_with_one_registry_share_their_database_pool() {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!("callnext-shared-{}", std::process::id());
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}application_name={name}");
    let text = format!(
        "[middleware.session]\nstore = \"{url}\"\nsecret = \"{}\"\n",
        "s".repeat(64)
    );
    let config = callnext::config::Config::parse(&text, "app.toml", &[]).unwrap();
    let registry = callnext::config::Registry::new();
    let pool = sqlx::PgPool::connect(&base).await.unwrap();
    let connections = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&name)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let mut alive = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..3 {
        let stack = config.stack(&registry).unwrap();
        let client = TestClient::new(stack.service(session_suite::writer()));
        assert_eq!(client.post("/").await.status(), 200);
        alive.push(client);
        counts.push(connections().await);
    }
    // The second and third stacks open no connection of their own.
    assert!(counts[0] > 0, "{counts:?}");
    assert_eq!(counts, [counts[0]; 3]);
}
