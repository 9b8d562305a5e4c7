//! Connections to the stores batteries share: one client per Redis URL, used by every
//! battery that names that URL (the configuration file shares them by URL; in code, clone
//! the handle).
//!
//! ```
//! # #[cfg(not(feature = "redis"))] fn main() {}
//! # #[cfg(feature = "redis")]
//! # #[tokio::main] async fn main() -> Result<(), callnext::ConfigError> {
//! use callnext::backends::Redis;
//! use callnext::middleware::RateLimit;
//!
//! // Nothing connects yet: the first request does, and a Redis that is down is the limiter's
//! // store error (`on_store_error`), not a failure to start.
//! let redis = Redis::open("redis://127.0.0.1:6379/0")?;
//! let limit = RateLimit::builder().limit("100/minute").redis(redis.clone()).build()?;
//! # let _ = limit; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

#[cfg(feature = "redis")]
pub use self::redis_client::Redis;

/// The longest a probe waits, in case its caller sets no timeout of its own.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One round trip to a store: `Ok`, or what failed as text.
pub(crate) type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A battery's failure-policy counters, by short snake_case name.
pub(crate) type Counters = Arc<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// A store an entry talks to, as the live page shows it: its kind, where it is, a probe for
/// its health and latency, and the entry's counters of what it did when the store failed.
///
/// callnext's batteries offer theirs through their
/// [`Capabilities`](crate::battery::Capabilities); a middleware of your own offers its own
/// the same way:
///
/// ```
/// use callnext::backends::Backend;
/// use callnext::battery::Capabilities;
/// use futures_util::FutureExt;
///
/// let store = Backend::new("http", "https://user:hunter2@flags.example/v1", || {
///     async { Ok::<(), std::io::Error>(()) }.boxed()
/// })
/// .counters(|| vec![("fallbacks", 0)]);
/// assert_eq!(store.url(), "https://user:***@flags.example/v1");
/// let caps = Capabilities::new().kind("feature_flags").store(store);
/// # let _ = caps;
/// ```
#[derive(Clone)]
pub struct Backend {
    /// "redis", "postgres", "sqlite", or what the entry calls it.
    pub(crate) kind: &'static str,
    /// Where it is, any password replaced by `***`.
    pub(crate) url: String,
    /// One round trip (Redis `PING`, SQL `SELECT 1`) through the entry's own client or
    /// pool; an error as text, without passwords. Gives up by itself after 5 s.
    pub(crate) probe: Probe,
    /// The entry's failure-policy counters since it was built, read when called.
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A store of `kind` at `url` (shown with any password in it replaced by `***`), whose
    /// health is one call of `probe`: a round trip through the entry's own client. A probe
    /// that takes longer than 5 s counts as failed; its error is shown without passwords.
    pub fn new<F, E>(kind: &'static str, url: &str, probe: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<(), E>> + Send + Sync + 'static,
        E: std::fmt::Display + 'static,
    {
        use futures_util::FutureExt;
        let probe: Probe = Arc::new(move || {
            let call = probe();
            async move {
                match tokio::time::timeout(PROBE_TIMEOUT, call).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(crate::redact::redact_urls(&err.to_string())),
                    Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
                }
            }
            .boxed()
        });
        Self {
            kind,
            url: crate::redact::redact_urls(url),
            probe,
            counters: Arc::new(Vec::new),
        }
    }

    /// The entry's counters of what it did when the store failed (`store_errors_open`,
    /// `fallbacks`), read each time the live page shows them. Defaults to none.
    #[must_use]
    pub fn counters(
        mut self,
        counters: impl Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    ) -> Self {
        self.counters = Arc::new(counters);
        self
    }

    /// Its kind.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Where it is, any password replaced by `***`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(any(feature = "redis", feature = "sql"))]
impl Backend {
    /// A backend whose counters are `counters`.
    fn with_counters(mut self, counters: Counters) -> Self {
        self.counters = counters;
        self
    }

    /// The Redis behind `redis`, probed with `PING` on its shared connection.
    #[cfg(feature = "redis")]
    pub(crate) fn redis(redis: &Redis, counters: Counters) -> Self {
        use futures_util::FutureExt;
        let client = redis.clone();
        let probe = move || {
            let client = client.clone();
            async move {
                let mut connection = client.connection().await?;
                redis::cmd("PING").query_async::<()>(&mut connection).await
            }
            .boxed()
        };
        Self::new("redis", redis.url(), probe).with_counters(counters)
    }

    /// The database of a SQL store at `url`, probed with `SELECT 1` on the pool `pool` gives
    /// (the store's own, connected on first use).
    #[cfg(feature = "sql")]
    pub(crate) fn sql<F, E>(url: &str, pool: F, counters: Counters) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<crate::sql::Pool, E>> + Send + Sync + 'static,
        E: std::fmt::Display + 'static,
    {
        use futures_util::FutureExt;
        let probe = move || {
            let pool = pool();
            async move {
                let pool = pool.await.map_err(|err| err.to_string())?;
                crate::sql::ping(&pool).await.map_err(|err| err.to_string())
            }
            .boxed()
        };
        Self::new(crate::sql::kind(url), url, probe).with_counters(counters)
    }
}

#[cfg(feature = "redis")]
mod redis_client;

/// Whether `url` names a Redis deployment `Redis::open` reads (by its scheme): the
/// configuration file's store settings ask.
#[cfg(feature = "config")]
pub(crate) fn is_redis_url(url: &str) -> bool {
    [
        "redis://",
        "rediss://",
        "redis+unix://",
        "redis+cluster://",
        "redis+sentinel://",
    ]
    .iter()
    .any(|scheme| url.starts_with(scheme))
}

/// What the unit tests of the batteries' backends share: where the real stores are, a port
/// where none is, and a bounded probe.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::Duration;

    use super::Backend;

    /// The shared Redis (`REDIS_URL`, default 127.0.0.1:6379).
    pub(crate) fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    /// The shared PostgreSQL (`DATABASE_URL`, default 127.0.0.1:5432, database `test`).
    #[cfg(feature = "sql")]
    pub(crate) fn database_url() -> String {
        std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A port on 127.0.0.1 where nothing listens: bound, read back, let go.
    pub(crate) fn dead_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    /// A `sqlite://` URL of a fresh file of this test's own.
    #[cfg(feature = "sql")]
    pub(crate) fn sqlite_url(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("callnext-backends-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.db"));
        let _ = std::fs::remove_file(&path);
        format!("sqlite://{}", path.display())
    }

    /// The backend's probe, which must answer within 10 s.
    pub(crate) async fn probe(backend: &Backend) -> Result<(), String> {
        tokio::time::timeout(Duration::from_secs(10), (backend.probe)())
            .await
            .expect("the probe answers within 10 s")
    }

    /// The counter `name` of the backend's battery.
    pub(crate) fn counter(backend: &Backend, name: &str) -> u64 {
        (backend.counters)()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no counter `{name}`"))
            .1
    }
}
