//! The SQL stores (feature `sql`, sqlx): PostgreSQL for several instances, SQLite for one
//! machine. One table, made by the store on first use; compare-and-set is
//! `UPDATE ... WHERE version = ?`; an index on the expiry and a sweeper that deletes expired
//! rows once a minute, 1,000 per statement (up to 60 statements a run), keep the table bounded.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::Row;

use super::store::{Data, Record, Saved, SessionStore, StoreError};
use crate::clock::wall_ms as now_ms;

/// How often the sweeper runs, the most rows one statement deletes, and the most statements
/// one run makes (60,000 expired rows a minute at most).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_ROWS: i64 = 1000;
const SWEEP_BATCHES: usize = 60;

use crate::sql::{execute, ms, sqlite, Lazy, Pool};

/// Sessions in a PostgreSQL or SQLite database, in the table `callnext_sessions`.
///
/// ```
/// use callnext::middleware::session::SqlStore;
///
/// // Connects on first use; a database that is down is a 503 for the requests that need it.
/// let store = SqlStore::open("sqlite://sessions.db").unwrap();
/// # let _ = store;
/// ```
#[derive(Clone, Debug)]
pub struct SqlStore {
    pub(super) db: Lazy,
}

fn failed(err: sqlx::Error) -> StoreError {
    StoreError(Box::new(err))
}

impl SqlStore {
    /// A store at `url`: `postgres://user@host/db` or `sqlite://file.db` (created if absent).
    ///
    /// # Errors
    ///
    /// A URL of another scheme.
    pub fn open(url: &str) -> Result<Self, crate::ConfigError> {
        Ok(Self {
            db: Lazy::open(url, "store", |pool, ready| {
                async move {
                    migrate(&pool).await?;
                    // The sweeper holds no pool of its own: it ends with the last clone of
                    // the store.
                    tokio::spawn(async move {
                        let first = tokio::time::Instant::now() + SWEEP_EVERY;
                        let mut every = tokio::time::interval_at(first, SWEEP_EVERY);
                        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            every.tick().await;
                            let Some(ready) = ready.upgrade() else { break };
                            let Some(pool) = ready.get() else { break };
                            if let Err(err) = sweep(pool).await {
                                tracing::warn!(error = %err, "session sweeper failed");
                            }
                        }
                    });
                    Ok(())
                }
                .boxed()
            })?,
        })
    }

    /// The pool, connected and with its table, on first use; the sweeper starts then too.
    async fn pool(&self) -> Result<&Pool, StoreError> {
        self.db.pool().await.map_err(failed)
    }

    /// Its database for the live page, probed on the store's pool (connected, and its table
    /// made, if no request has yet).
    pub(crate) fn backend(&self, counters: crate::backends::Counters) -> crate::backends::Backend {
        self.db.backend(counters)
    }

    /// Deletes expired sessions and tombstones now, and says how many: 1,000 rows a statement,
    /// until a statement finds fewer or 60 were made. The store does this by itself once a
    /// minute from its first use; call it to sweep at other times.
    ///
    /// # Errors
    ///
    /// The database failed or cannot be reached.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        sweep(self.pool().await?).await
    }
}

/// The table and its expiry index, if absent.
async fn migrate(pool: &Pool) -> Result<(), sqlx::Error> {
    let table = "CREATE TABLE IF NOT EXISTS callnext_sessions (
        id TEXT PRIMARY KEY,
        version BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        gone BOOLEAN NOT NULL DEFAULT FALSE,
        data TEXT NOT NULL
    )";
    let index =
        "CREATE INDEX IF NOT EXISTS callnext_sessions_expires ON callnext_sessions (expires_ms)";
    crate::sql::migrate(pool, 7_243_102, &[table, index]).await
}

/// Deletes expired rows in statements of [`SWEEP_ROWS`] (short, so they hold no lock for
/// long), more of them while they come back full, at most [`SWEEP_BATCHES`].
async fn sweep(pool: &Pool) -> Result<u64, StoreError> {
    let mut total = 0;
    for _ in 0..SWEEP_BATCHES {
        let rows = sweep_batch(pool).await?;
        total += rows;
        if rows < SWEEP_ROWS.unsigned_abs() {
            break;
        }
    }
    Ok(total)
}

/// Deletes at most [`SWEEP_ROWS`] expired rows (sessions and tombstones).
async fn sweep_batch(pool: &Pool) -> Result<u64, StoreError> {
    let sql = "DELETE FROM callnext_sessions WHERE id IN \
        (SELECT id FROM callnext_sessions WHERE expires_ms <= $1 LIMIT $2)";
    let now = ms(now_ms());
    let done = match pool {
        Pool::Postgres(p) => p
            .execute(sqlx::query(sql).bind(now).bind(SWEEP_ROWS))
            .await
            .map(|r| r.rows_affected()),
        Pool::Sqlite(p) => sqlx::query(&sqlite(sql))
            .bind(now)
            .bind(SWEEP_ROWS)
            .execute(p)
            .await
            .map(|r| r.rows_affected()),
    };
    done.map_err(failed)
}

/// One row's columns.
type Row_ = (i64, i64, i64, bool, String);

fn record((version, created, expires, gone, data): Row_) -> Option<Record> {
    if gone {
        return None;
    }
    Some(Record {
        data: serde_json::from_str::<Data>(&data).ok()?,
        version: u64::try_from(version).ok()?,
        created_ms: u64::try_from(created).ok()?,
        expires_ms: u64::try_from(expires).ok()?,
    })
}

impl SqlStore {
    async fn current(&self, id: &str) -> Result<Option<Row_>, StoreError> {
        let pool = self.pool().await?;
        let sql = "SELECT version, created_ms, expires_ms, gone, data FROM callnext_sessions \
            WHERE id = $1 AND expires_ms > $2";
        let now = ms(now_ms());
        // The same columns from either database's row.
        macro_rules! columns {
            ($row:expr) => {
                $row.map(|r| {
                    (
                        r.get::<i64, _>(0),
                        r.get::<i64, _>(1),
                        r.get::<i64, _>(2),
                        r.get::<bool, _>(3),
                        r.get::<String, _>(4),
                    )
                })
            };
        }
        let row = match pool {
            Pool::Postgres(p) => columns!(p
                .fetch_optional(sqlx::query(sql).bind(id).bind(now))
                .await
                .map_err(failed)?),
            Pool::Sqlite(p) => columns!(sqlx::query(&sqlite(sql))
                .bind(id)
                .bind(now)
                .fetch_optional(p)
                .await
                .map_err(failed)?),
        };
        Ok(row)
    }
}

impl SessionStore for SqlStore {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        async move { Ok(self.current(id).await?.and_then(record)) }.boxed()
    }

    fn create<'a>(
        &'a self,
        id: &'a str,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let pool = self.pool().await?;
            // Insert if absent, or over a row whose time is up (an expired session or
            // tombstone the sweeper has not reached yet).
            let sql =
                "INSERT INTO callnext_sessions (id, version, created_ms, expires_ms, gone, data) \
                VALUES ($1, $2, $3, $4, FALSE, $5) \
                ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
                created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, \
                gone = FALSE, data = excluded.data \
                WHERE callnext_sessions.expires_ms <= $6";
            let data = serde_json::Value::Object(rec.data.clone()).to_string();
            let now = ms(now_ms());
            let done = execute!(pool, sql, |q| q
                .bind(id)
                .bind(ms(rec.version))
                .bind(ms(rec.created_ms))
                .bind(ms(rec.expires_ms))
                .bind(&data)
                .bind(now))
            .map_err(failed)?;
            Ok(done == 1)
        }
        .boxed()
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        rec: &'a Record,
        expected: u64,
    ) -> BoxFuture<'a, Result<Saved, StoreError>> {
        async move {
            let pool = self.pool().await?;
            let sql = "UPDATE callnext_sessions SET version = $1, expires_ms = $2, data = $3 \
                WHERE id = $4 AND version = $5 AND gone = FALSE AND expires_ms > $6";
            let data = serde_json::Value::Object(rec.data.clone()).to_string();
            let now = ms(now_ms());
            let done = execute!(pool, sql, |q| q
                .bind(ms(expected + 1))
                .bind(ms(rec.expires_ms))
                .bind(&data)
                .bind(id)
                .bind(ms(expected))
                .bind(now))
            .map_err(failed)?;
            if done == 1 {
                return Ok(Saved::Saved(expected + 1));
            }
            Ok(match self.current(id).await?.and_then(record) {
                Some(current) => Saved::Conflict(current),
                None => Saved::Gone,
            })
        }
        .boxed()
    }

    fn destroy<'a>(
        &'a self,
        id: &'a str,
        tombstone_until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let pool = self.pool().await?;
            let sql = "INSERT INTO callnext_sessions (id, version, created_ms, expires_ms, gone, data) \
                VALUES ($1, 0, $2, $3, TRUE, '{}') \
                ON CONFLICT (id) DO UPDATE SET gone = TRUE, data = '{}', expires_ms = excluded.expires_ms";
            let now = ms(now_ms());
            execute!(
                pool,
                sql,
                |q| q.bind(id).bind(now).bind(ms(tombstone_until_ms))
            )
            .map_err(failed)?;
            Ok(())
        }
        .boxed()
    }
}
