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
    Postgres(Pg),
    Sqlite(sqlx::SqlitePool),
}

/// A query on PostgreSQL, its parameters bound.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// `Pg`'s ways to run a query: on the pool, or behind PgBouncer in a transaction of its own,
/// since a statement is parsed (one round trip) and then executed (another), and only a
/// transaction keeps both on one server connection.
macro_rules! run_on_pg {
    ($($(#[$doc:meta])* $name:ident -> $out:ty;)*) => {
        impl Pg {
            $(
                $(#[$doc])*
                pub(crate) async fn $name(&self, query: PgQuery<'_>) -> Result<$out, sqlx::Error> {
                    if self.persistent {
                        return query.$name(&self.pool).await;
                    }
                    let mut tx = self.pool.begin().await?;
                    let out = query.persistent(false).$name(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(out)
                }
            )*
        }
    };
}

run_on_pg! {
    /// Every row.
    fetch_all -> Vec<sqlx::postgres::PgRow>;
    /// The first row, if any.
    fetch_optional -> Option<sqlx::postgres::PgRow>;
    /// What it did.
    execute -> sqlx::postgres::PgQueryResult;
}

/// A PostgreSQL pool, and whether its statements may be prepared once per connection and
/// kept: not behind PgBouncer in transaction mode, where a server connection serves one of our
/// transactions and then another client's (sqlx names a statement it keeps, and that name
/// would meet another client's statement on the server), so each query is parsed again,
/// unnamed.
#[derive(Debug, Clone)]
pub(crate) struct Pg {
    pub(crate) pool: sqlx::PgPool,
    pub(crate) persistent: bool,
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
        Pool::Postgres(p) => p.execute(sqlx::query("SELECT 1")).await.map(drop),
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
                p.execute($bind).await.map(|r| r.rows_affected())
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
        let (url, pgbouncer) = pgbouncer(url);
        let mut options: sqlx::postgres::PgConnectOptions = url.parse()?;
        if pgbouncer {
            // A server connection serves one transaction of ours, then another client's: no
            // named statement may outlive it (unnamed ones are parsed again each time), and
            // PgBouncer refuses startup parameters it does not track.
            options = options.statement_cache_capacity(0).extra_float_digits(None);
        }
        Pool::Postgres(Pg {
            pool: sqlx::postgres::PgPoolOptions::new()
                .acquire_timeout(Duration::from_secs(2))
                .connect_with(options)
                .await?,
            persistent: !pgbouncer,
        })
    })
}

/// `url` without its `pgbouncer=true` query parameter, and whether it had it: the database is
/// reached through PgBouncer in transaction mode (or another pooler that hands each
/// transaction a server connection of its own).
fn pgbouncer(url: &str) -> (String, bool) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), false);
    };
    let mut on = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=').unwrap_or((pair, "")) {
            ("pgbouncer", value) => {
                on = matches!(value, "true" | "1" | "");
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), on)
    } else {
        (format!("{base}?{}", kept.join("&")), on)
    }
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
            let mut tx = p.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .persistent(p.persistent)
                .bind(lock)
                .execute(&mut *tx)
                .await?;
            for statement in statements {
                sqlx::query(statement)
                    .persistent(p.persistent)
                    .execute(&mut *tx)
                    .await?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_pgbouncer_parameter_is_read_and_left_out() {
        let cases = [
            ("postgres://h/db", "postgres://h/db", false),
            ("postgres://h/db?pgbouncer=true", "postgres://h/db", true),
            (
                "postgres://h/db?sslmode=disable&pgbouncer=1",
                "postgres://h/db?sslmode=disable",
                true,
            ),
            (
                "postgres://h/db?pgbouncer=false&application_name=a",
                "postgres://h/db?application_name=a",
                false,
            ),
        ];
        for (url, left, on) in cases {
            assert_eq!(super::pgbouncer(url), (left.to_owned(), on), "{url}");
        }
    }
}
