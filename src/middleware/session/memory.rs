//! The memory store: moka's bounded cache, each entry expiring when its session does.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use moka::ops::compute::Op;

use super::store::{Record, Saved, SessionStore, StoreError};
use crate::clock::wall_ms as now_ms;

/// A session, or the tombstone a destroyed one leaves.
#[derive(Debug)]
enum Slot {
    Live(Record),
    Gone { until_ms: u64 },
}

impl Slot {
    fn until_ms(&self) -> u64 {
        match self {
            Slot::Live(record) => record.expires_ms,
            Slot::Gone { until_ms } => *until_ms,
        }
    }
}

/// Entries live until their session's deadline (moka evicts them then, without a task of
/// ours); past its capacity moka evicts the least likely to be used.
struct UntilDeadline;

impl moka::Expiry<String, Arc<Slot>> for UntilDeadline {
    fn expire_after_create(
        &self,
        _key: &String,
        slot: &Arc<Slot>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            slot.until_ms().saturating_sub(now_ms()),
        ))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        slot: &Arc<Slot>,
        _now: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            slot.until_ms().saturating_sub(now_ms()),
        ))
    }
}

/// Sessions in this process's memory, at most `max_sessions` of them (the default store;
/// sessions do not survive a restart and are not shared between instances).
///
/// ```
/// use callnext::middleware::session::MemoryStore;
/// let store = MemoryStore::new(100_000);
/// # let _ = store;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    // Shared, so that moka's reads (which clone the value) do not copy the session's data.
    cache: moka::sync::Cache<String, Arc<Slot>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.cache.entry_count())
            .finish()
    }
}

impl MemoryStore {
    /// A store of at most `max_sessions` sessions (tombstones included).
    pub fn new(max_sessions: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_sessions)
                .expire_after(UntilDeadline)
                .build(),
        }
    }

    /// The slot of `id`, if its deadline has not passed (moka's clock is not the session
    /// clock, which a paused test clock drives).
    fn current(&self, id: &str) -> Option<Arc<Slot>> {
        self.cache.get(id).filter(|slot| slot.until_ms() > now_ms())
    }
}

impl SessionStore for MemoryStore {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        let found = match self.current(id).as_deref() {
            Some(Slot::Live(record)) => Some(record.clone()),
            _ => None,
        };
        std::future::ready(Ok(found)).boxed()
    }

    fn create<'a>(
        &'a self,
        id: &'a str,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = now_ms();
        let result = self
            .cache
            .entry(id.to_owned())
            .and_compute_with(|slot| match slot {
                Some(slot) if slot.value().until_ms() > now => Op::Nop,
                _ => Op::Put(Arc::new(Slot::Live(record.clone()))),
            });
        let created = matches!(
            result,
            moka::ops::compute::CompResult::Inserted(_)
                | moka::ops::compute::CompResult::ReplacedWith(_)
        );
        std::future::ready(Ok(created)).boxed()
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        record: &'a Record,
        expected: u64,
    ) -> BoxFuture<'a, Result<Saved, StoreError>> {
        let now = now_ms();
        let mut answer = Saved::Gone;
        self.cache.entry(id.to_owned()).and_compute_with(|slot| {
            match slot.as_ref().map(|s| &**s.value()) {
                Some(Slot::Live(current)) if current.expires_ms > now => {
                    if current.version == expected {
                        let mut next = record.clone();
                        next.version = expected + 1;
                        answer = Saved::Saved(next.version);
                        Op::Put(Arc::new(Slot::Live(next)))
                    } else {
                        answer = Saved::Conflict(current.clone());
                        Op::Nop
                    }
                }
                _ => Op::Nop,
            }
        });
        std::future::ready(Ok(answer)).boxed()
    }

    fn destroy<'a>(
        &'a self,
        id: &'a str,
        tombstone_until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.cache.insert(
            id.to_owned(),
            Arc::new(Slot::Gone {
                until_ms: tombstone_until_ms,
            }),
        );
        std::future::ready(Ok(())).boxed()
    }
}
