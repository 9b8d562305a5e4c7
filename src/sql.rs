//! PostgreSQL or SQLite for the batteries that keep state in SQL (sessions, API keys): one way
//! to connect, and one way to make their tables.

use std::time::Duration;

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
