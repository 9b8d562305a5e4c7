//! The store as the battery reaches it: every call under the store guard, its failures
//! counted, its time measured; what the live page and the metrics are told of it.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The store, with its failures counted, and each call timed once the stack records metrics.
pub(super) struct Measured {
    pub(super) inner: Arc<dyn SessionStore>,
    /// The same store, to tell which it is (for the live page).
    #[cfg_attr(not(any(feature = "redis", feature = "sql")), allow(dead_code))]
    pub(super) any: Arc<dyn Any + Send + Sync>,
    /// Every call of a store that is not in memory goes through it.
    pub(super) guard: Option<StoreGuard>,
    /// Errors of load, create, save, destroy, whether or not metrics are recorded.
    pub(super) errors: Arc<[AtomicU64; 4]>,
    #[cfg(feature = "prometheus")]
    pub(super) metrics: std::sync::OnceLock<StoreMetrics>,
}

#[cfg(feature = "prometheus")]
pub(super) struct StoreMetrics {
    /// Errors of load, create, save, destroy.
    errors: [metrics::Counter; 4],
    seconds: Arc<crate::metrics::Histogram>,
}

impl Measured {
    async fn measure<T>(
        &self,
        op: usize,
        call: futures_util::future::BoxFuture<'_, Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        #[cfg(feature = "prometheus")]
        let started = crate::clock::ticks::now();
        let result = match &self.guard {
            Some(guard) => guard
                .call("session", call)
                .await
                .map_err(|refused| match refused {
                    Refused::Failed(err) => err,
                    other => StoreError(other.to_string().into()),
                }),
            None => call.await,
        };
        if result.is_err() {
            self.errors[op].fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "prometheus")]
        if let Some(m) = self.metrics.get() {
            m.seconds
                .record_ticks(crate::clock::ticks::now().saturating_sub(started));
            if result.is_err() {
                m.errors[op].increment(1);
            }
        }
        result
    }

    pub(super) async fn load(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.measure(0, self.inner.load(id)).await
    }

    pub(super) async fn create(&self, id: &str, record: &Record) -> Result<bool, StoreError> {
        self.measure(1, self.inner.create(id, record)).await
    }

    pub(super) async fn save(
        &self,
        id: &str,
        record: &Record,
        expected: u64,
    ) -> Result<Saved, StoreError> {
        self.measure(2, self.inner.save(id, record, expected)).await
    }

    pub(super) async fn destroy(&self, id: &str, until: u64) -> Result<(), StoreError> {
        self.measure(3, self.inner.destroy(id, until)).await
    }
}

/// Where a store is, for the guard's log lines: the URL of callnext's Redis and SQL stores,
/// the type of another.
pub(super) fn store_url(any: &(dyn Any + Send + Sync)) -> String {
    #[cfg(feature = "redis")]
    if let Some(redis) = any.downcast_ref::<RedisStore>() {
        return redis.redis.url().to_owned();
    }
    #[cfg(feature = "sql")]
    if let Some(sql) = any.downcast_ref::<SqlStore>() {
        return sql.db.shown().to_owned();
    }
    let _ = any;
    "an application's store".to_owned()
}

impl Sessions {
    /// The store sessions live in, for the live page: none in memory (or in a store of the
    /// application's); a Redis or SQL store with its errors by operation
    /// (`store_errors_load`, `_create`, `_save`, `_destroy`).
    #[cfg(any(feature = "redis", feature = "sql"))]
    pub(crate) fn backends(&self) -> Vec<crate::backends::Backend> {
        let store = &self.shared.store;
        let errors = Arc::clone(&store.errors);
        let counters: crate::backends::Counters = Arc::new(move || {
            let n = |op: usize| errors[op].load(Ordering::Relaxed);
            vec![
                ("store_errors_load", n(0)),
                ("store_errors_create", n(1)),
                ("store_errors_save", n(2)),
                ("store_errors_destroy", n(3)),
            ]
        });
        #[cfg(feature = "redis")]
        if let Some(redis) = store.any.downcast_ref::<RedisStore>() {
            return vec![redis.backend(counters)];
        }
        #[cfg(feature = "sql")]
        if let Some(sql) = store.any.downcast_ref::<SqlStore>() {
            return vec![sql.backend(counters)];
        }
        Vec::new()
    }
}

#[cfg(feature = "prometheus")]
impl Sessions {
    /// Registers its series (called when the stack records into `metrics`).
    pub(crate) fn register_metrics(
        &self,
        metrics: &crate::metrics::Metrics,
        stack: &str,
        entry: &str,
    ) {
        use crate::metrics::{SESSION_STORE_ERRORS, SESSION_STORE_SECONDS};
        let base = || {
            vec![
                ("stack", stack.to_owned()),
                ("middleware", entry.to_owned()),
            ]
        };
        let error = |op: &str| {
            let mut labels = base();
            labels.push(("op", op.to_owned()));
            metrics.counter(SESSION_STORE_ERRORS, &labels)
        };
        let _ = self.shared.store.metrics.set(StoreMetrics {
            errors: [
                error("load"),
                error("create"),
                error("save"),
                error("destroy"),
            ],
            seconds: metrics.histogram(SESSION_STORE_SECONDS, base()),
        });
    }
}
