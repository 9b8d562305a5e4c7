//! PostgreSQL or SQLite for the batteries that keep state in SQL (sessions, API keys): one way
//! to connect, and one way to make their tables.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::OnceCell;

/// What a store does once connected, before its first use: makes its tables, starts its
/// sweeper (given the store's cell, weakly, so a task ends with the store).
pub(crate) type Prepare =
    fn(Pool, Weak<OnceCell<Pool>>) -> BoxFuture<'static, Result<(), sqlx::Error>>;

/// A database a store opens on first use: its URL checked when the store is built, then
/// connected and prepared once, by whichever request needs it first. `Debug` shows the URL
/// without its credentials.
#[derive(Clone)]
pub(crate) struct Lazy {
    url: String,
    /// The URL without credentials.
    shown: String,
    prepare: Prepare,
    ready: Arc<OnceCell<Pool>>,
}

impl std::fmt::Debug for Lazy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Lazy {
    /// A database at `url` (`postgres://`, `postgresql://` or `sqlite:`), prepared with
    /// `prepare`; another scheme is an error of the setting `key`.
    pub(crate) fn open(
        url: &str,
        key: &'static str,
        prepare: Prepare,
    ) -> Result<Self, crate::ConfigError> {
        let shown = crate::redact::redact_urls(url);
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return Err(crate::ConfigError::invalid(
                key,
                format!("expected a postgres:// or sqlite:// URL, got `{shown}`"),
            ));
        }
        Ok(Self {
            url: url.to_owned(),
            shown,
            prepare,
            ready: Arc::default(),
        })
    }

    /// The URL without credentials.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The pool, connected and prepared on first use.
    pub(crate) async fn pool(&self) -> Result<&Pool, sqlx::Error> {
        self.ready
            .get_or_try_init(|| async {
                let pool = connect(&self.url).await?;
                (self.prepare)(pool.clone(), Arc::downgrade(&self.ready)).await?;
                tracing::debug!(store = %self.shown, "database ready");
                Ok(pool)
            })
            .await
    }

    /// The database for the live page, probed on the store's pool (connected and prepared if
    /// no request has yet).
    pub(crate) fn backend(&self, counters: crate::backends::Counters) -> crate::backends::Backend {
        let db = self.clone();
        let pool = move || {
            let db = db.clone();
            async move { db.pool().await.cloned() }.boxed()
        };
        crate::backends::Backend::sql(&self.url, pool, counters)
    }
}

/// A pool of either database.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// What the live page calls the database at `url`: `sqlite` or `postgres`.
pub(crate) fn kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

/// One round trip, `SELECT 1`, on a connection of the pool.
pub(crate) async fn ping(pool: &Pool) -> Result<(), sqlx::Error> {
    match pool {
        Pool::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
        Pool::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
    }
}

/// SQLite's numbered parameters are `?N` where PostgreSQL's are `$N`.
pub(crate) fn sqlite(sql: &str) -> String {
    sql.replace('$', "?")
}

/// A time or count as the `BIGINT` both databases store.
pub(crate) fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Executes `$sql` (written with `$N` parameters) with the parameters `$bind` adds, on either
/// database; the rows affected.
macro_rules! execute {
    ($pool:expr, $sql:expr, |$q:ident| $bind:expr) => {
        match $pool {
            $crate::sql::Pool::Postgres(p) => {
                let $q = sqlx::query($sql);
                $bind.execute(p).await.map(|r| r.rows_affected())
            }
            $crate::sql::Pool::Sqlite(p) => {
                let sql = $crate::sql::sqlite($sql);
                let $q = sqlx::query(&sql);
                $bind.execute(p).await.map(|r| r.rows_affected())
            }
        }
    };
}
pub(crate) use execute;

/// Connects to `url` (`postgres://`, `postgresql://` or `sqlite:`): a SQLite file is made if
/// absent and used in WAL mode; waiting for a connection is bounded (2 s), and so is waiting
/// for SQLite's lock (5 s).
pub(crate) async fn connect(url: &str) -> Result<Pool, sqlx::Error> {
    Ok(if url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
        let options = options
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        Pool::Sqlite(
            sqlx::sqlite::SqlitePoolOptions::new()
                .acquire_timeout(Duration::from_secs(2))
                .connect_with(options)
                .await?,
        )
    } else {
        Pool::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .acquire_timeout(Duration::from_secs(2))
                .connect(url)
                .await?,
        )
    })
}

/// Runs `statements` (`CREATE ... IF NOT EXISTS`). On PostgreSQL, under the advisory lock
/// `lock`: instances starting together would race on the catalogue (two `CREATE TABLE IF NOT
/// EXISTS` at once can fail), so they go one at a time.
pub(crate) async fn migrate(
    pool: &Pool,
    lock: i64,
    statements: &[&str],
) -> Result<(), sqlx::Error> {
    match pool {
        Pool::Postgres(p) => {
            let mut tx = p.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock)
                .execute(&mut *tx)
                .await?;
            for statement in statements {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        Pool::Sqlite(p) => {
            for statement in statements {
                sqlx::query(statement).execute(p).await?;
            }
            Ok(())
        }
    }
}
