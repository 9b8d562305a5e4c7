//! API keys in PostgreSQL or SQLite (feature `sql`): one table, made on first use.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::Row;

use super::api_key::{generate, KeyStore, KeyStoreError, NewKey, StoredKey};

use crate::sql::{execute, ms, sqlite, Lazy, Pool};

/// API keys in the table `callnext_api_keys` of a PostgreSQL or SQLite database: each key's
/// public id, name, scopes, times, and the SHA-256 digest of the key (never the key).
///
/// ```
/// use callnext::middleware::auth::SqlKeyStore;
///
/// // Connects on first use; a database that is down is a 503 for the requests that need it.
/// let keys = SqlKeyStore::open("sqlite://keys.db").unwrap();
/// # let _ = keys;
/// ```
#[derive(Clone, Debug)]
pub struct SqlKeyStore {
    db: Lazy,
}

fn failed(err: sqlx::Error) -> KeyStoreError {
    KeyStoreError(Box::new(err))
}

use crate::clock::wall_ms as now_ms;

impl SqlKeyStore {
    /// A store at `url`: `postgres://user@host/db` or `sqlite://file.db` (created if absent).
    ///
    /// # Errors
    ///
    /// A URL of another scheme.
    pub fn open(url: &str) -> Result<Self, crate::ConfigError> {
        Ok(Self {
            db: Lazy::open(url, "api_keys", |pool, _| {
                async move {
                    let table = "CREATE TABLE IF NOT EXISTS callnext_api_keys (
                        id TEXT PRIMARY KEY,
                        name TEXT NOT NULL,
                        digest TEXT NOT NULL,
                        scopes TEXT NOT NULL,
                        created_ms BIGINT NOT NULL,
                        revoked_ms BIGINT
                    )";
                    crate::sql::migrate(&pool, 7_243_103, &[table]).await
                }
                .boxed()
            })?,
        })
    }

    async fn pool(&self) -> Result<&Pool, KeyStoreError> {
        self.db.pool().await.map_err(failed)
    }

    /// Its database for the live page, probed on the store's pool (connected, and its table
    /// made, if no request has yet).
    pub(crate) fn backend(&self, counters: crate::backends::Counters) -> crate::backends::Backend {
        self.db.backend(counters)
    }

    /// Makes a key named `name` with `scopes` and stores its digest; the key is in the answer
    /// and nowhere else.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn create(&self, name: &str, scopes: &[String]) -> Result<NewKey, KeyStoreError> {
        let made = generate(name, scopes, now_ms());
        let s = &made.stored;
        let sql = "INSERT INTO callnext_api_keys (id, name, digest, scopes, created_ms) \
            VALUES ($1, $2, $3, $4, $5)";
        let digest = hex(&s.digest);
        let scopes = s.scopes.join(" ");
        let pool = self.pool().await?;
        execute!(pool, sql, |q| q
            .bind(&s.id)
            .bind(&s.name)
            .bind(&digest)
            .bind(&scopes)
            .bind(ms(s.created_ms)))
        .map_err(failed)?;
        Ok(made)
    }

    /// Every key, revoked ones included, oldest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn list(&self) -> Result<Vec<StoredKey>, KeyStoreError> {
        let sql = "SELECT id, name, digest, scopes, created_ms, revoked_ms FROM callnext_api_keys \
            ORDER BY created_ms, id";
        let rows = match self.pool().await? {
            Pool::Postgres(p) => p
                .fetch_all(sqlx::query(sql))
                .await
                .map_err(failed)?
                .iter()
                .map(row)
                .collect(),
            Pool::Sqlite(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .map_err(failed)?
                .iter()
                .map(row)
                .collect(),
        };
        Ok(rows)
    }

    /// Revokes the key with public id `id`; whether there was such a live key. Other
    /// instances stop accepting it when their cache of it expires (`[middleware.auth]
    /// cache_ttl`).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn revoke(&self, id: &str) -> Result<bool, KeyStoreError> {
        let sql =
            "UPDATE callnext_api_keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL";
        let now = ms(now_ms());
        let pool = self.pool().await?;
        let done = execute!(pool, sql, |q| q.bind(now).bind(id)).map_err(failed)?;
        Ok(done > 0)
    }

    /// Revokes every live key named `name`; how many there were.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn revoke_named(&self, name: &str) -> Result<u64, KeyStoreError> {
        let sql =
            "UPDATE callnext_api_keys SET revoked_ms = $1 WHERE name = $2 AND revoked_ms IS NULL";
        let now = ms(now_ms());
        let pool = self.pool().await?;
        execute!(pool, sql, |q| q.bind(now).bind(name)).map_err(failed)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A row of either database as a key (a digest that does not parse matches nothing).
fn row<R: Row>(r: &R) -> StoredKey
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let scopes: String = r.try_get("scopes").unwrap_or_default();
    let digest: String = r.try_get("digest").unwrap_or_default();
    let time = |v: i64| u64::try_from(v).unwrap_or(0);
    StoredKey {
        id: r.try_get("id").unwrap_or_default(),
        name: r.try_get("name").unwrap_or_default(),
        digest: unhex(&digest).unwrap_or([0xff; 32]),
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        created_ms: time(r.try_get("created_ms").unwrap_or(0)),
        // A value that does not read as a time still says the key was revoked.
        revoked_ms: match r.try_get::<Option<i64>, _>("revoked_ms") {
            Ok(revoked) => revoked.map(time),
            Err(_) => Some(0),
        },
    }
}

impl KeyStore for SqlKeyStore {
    fn live_ids(&self) -> BoxFuture<'_, Result<Vec<String>, KeyStoreError>> {
        async move {
            let sql = "SELECT id FROM callnext_api_keys WHERE revoked_ms IS NULL";
            let ids = match self.pool().await? {
                Pool::Postgres(p) => p.fetch_all(sqlx::query(sql)).await.map(|rows| {
                    rows.iter()
                        .map(|r| sqlx::Row::get::<String, _>(r, 0))
                        .collect()
                }),
                Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            };
            ids.map_err(failed)
        }
        .boxed()
    }

    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<StoredKey>, KeyStoreError>> {
        async move {
            let sql = "SELECT id, name, digest, scopes, created_ms, revoked_ms \
                FROM callnext_api_keys WHERE id = $1";
            let found = match self.pool().await? {
                Pool::Postgres(p) => p
                    .fetch_optional(sqlx::query(sql).bind(id))
                    .await
                    .map_err(failed)?
                    .as_ref()
                    .map(row),
                Pool::Sqlite(p) => sqlx::query(&sqlite(sql))
                    .bind(id)
                    .fetch_optional(p)
                    .await
                    .map_err(failed)?
                    .as_ref()
                    .map(row),
            };
            Ok(found)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{routing::get, Router};

    use super::*;
    use crate::backends::testing::{counter, dead_port, probe, sqlite_url};
    use crate::middleware::auth::{generate, Auth};
    use crate::{Stack, TestClient};

    #[test]
    fn debug_shows_no_password() {
        let keys = SqlKeyStore::open("postgres://app:hunter2@db/x?password=pw2").unwrap();
        let sessions =
            crate::middleware::session::SqlStore::open("postgres://app:hunter3@db/x").unwrap();
        let shown = format!("{keys:?} {sessions:?}");
        for secret in ["hunter2", "pw2", "hunter3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    fn client(auth: &Auth) -> TestClient<crate::StackService> {
        let app = Router::new().route("/", get(|| async { "in" }));
        TestClient::new(Stack::new().hook(auth.clone()).service(app))
    }

    #[tokio::test]
    async fn a_revocation_time_that_does_not_read_still_revokes() {
        let url = sqlite_url("api-keys-odd-revoked");
        let keys = SqlKeyStore::open(&url).unwrap();
        let made = keys.create("ci", &[]).await.unwrap();
        let id = made.stored.id.clone();
        let auth = Auth::builder().api_keys(keys.clone()).build().unwrap();
        assert_eq!(client(&auth).get("/").bearer(&made.key).await.status(), 200);
        // SQLite keeps whatever it is given: a text where a time belongs.
        let pool = keys.pool().await.unwrap();
        execute!(
            pool,
            "UPDATE callnext_api_keys SET revoked_ms = 'yesterday' WHERE id = $1",
            |q| q.bind(&id)
        )
        .unwrap();
        let found = keys.find(&id).await.unwrap().unwrap();
        assert!(found.revoked_ms.is_some(), "{found:?}");
        let fresh = Auth::builder().api_keys(keys).build().unwrap();
        assert_eq!(
            client(&fresh).get("/").bearer(&made.key).await.status(),
            401
        );
        let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
    }

    #[tokio::test]
    async fn api_keys_in_sqlite_name_the_file_and_the_probe_answers() {
        let url = sqlite_url("api-keys");
        let keys = SqlKeyStore::open(&url).unwrap();
        let made = keys.create("ci", &[]).await.unwrap();
        let auth = Auth::builder().api_keys(keys).build().unwrap();
        let backend = auth.backends().remove(0);
        assert_eq!(backend.kind, "sqlite");
        assert_eq!(backend.url, url);
        assert_eq!(probe(&backend).await, Ok(()));
        assert_eq!(client(&auth).get("/").bearer(&made.key).await.status(), 200);
        assert_eq!((backend.counters)(), [("store_errors", 0)]);
        let _ = std::fs::remove_file(url.trim_start_matches("sqlite://"));
    }

    #[tokio::test]
    async fn a_key_store_that_is_down_fails_the_probe_and_its_503s_are_counted() {
        let url = format!("postgres://postgres@127.0.0.1:{}/test", dead_port());
        // Shared through an `Arc`, as the application may hold it too.
        let keys = Arc::new(SqlKeyStore::open(&url).unwrap());
        let auth = Auth::builder().api_keys(keys).build().unwrap();
        let backend = auth.backends().remove(0);
        assert_eq!(backend.kind, "postgres");
        assert!(probe(&backend).await.is_err());
        assert_eq!(counter(&backend, "store_errors"), 0);

        let key = generate("ci", &[], 0).key;
        let client = client(&auth);
        assert_eq!(client.get("/").bearer(&key).await.status(), 503);
        assert_eq!(counter(&backend, "store_errors"), 1);
        // Refused without asking the store (no credentials, a malformed key): not counted.
        assert_eq!(client.get("/").await.status(), 401);
        assert_eq!(client.get("/").bearer("cnk_nope").await.status(), 401);
        assert_eq!(counter(&backend, "store_errors"), 1);
    }
}
