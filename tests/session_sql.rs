//! Sessions in SQL: the shared behavioural suite against a SQLite file the test creates and
//! against PostgreSQL (127.0.0.1:5432, database `test`, unless `DATABASE_URL` says
//! otherwise); expiry on real time; a database that is down is a 503.

mod session_suite;

use callnext::middleware::session::{Sessions, SqlStore};
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
