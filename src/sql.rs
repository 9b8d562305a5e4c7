//! PostgreSQL or SQLite for the batteries that keep state in SQL (sessions, API keys): one way
//! to connect, and one way to make their tables.

use std::time::Duration;

/// A pool of either database.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

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
