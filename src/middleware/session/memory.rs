//! The memory store: sessions in sharded maps, each entry expiring when its session does, with
//! room made by dropping new sessions only (never one a client has come back with).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::store::{Record, Saved, SessionStore, StoreError};
use crate::clock::wall_ms as now_ms;

/// Shards, each behind its own lock.
const SHARDS: usize = 16;

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

/// One session's entry.
#[derive(Debug)]
struct Entry {
    slot: Slot,
    /// A later request came back with its cookie (it was loaded): a client holds it, and
    /// making room for new sessions never drops it.
    established: bool,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<String, Entry>,
    /// Sessions not yet established (and tombstones), oldest first: where room is made. May
    /// name entries gone or established since; skipped when met.
    fresh: VecDeque<String>,
    /// Entries made since expired ones were last swept out.
    since_sweep: usize,
    /// When a full shard of established sessions was last swept (ms).
    swept_full_ms: u64,
}

impl Shard {
    /// Room for one more, if it can be made: expired entries go first (swept at most once
    /// per eighth of the shard's inserts, so a full shard costs amortised constant time),
    /// then the oldest new session or tombstone. `false` when every entry is an established
    /// session.
    fn make_room(&mut self, cap: usize, now: u64) -> bool {
        if self.map.len() < cap {
            return true;
        }
        if self.since_sweep >= cap / 8 {
            self.since_sweep = 0;
            self.map.retain(|_, e| e.slot.until_ms() > now);
            if self.map.len() < cap {
                return true;
            }
        }
        while let Some(oldest) = self.fresh.pop_front() {
            if self.map.get(&oldest).is_some_and(|e| !e.established) {
                self.map.remove(&oldest);
                return true;
            }
        }
        // Only established sessions: one may have expired since. Swept at most once a second,
        // so refusing a flood of new sessions stays cheap.
        if now >= self.swept_full_ms.saturating_add(1000) {
            self.swept_full_ms = now;
            self.since_sweep = 0;
            self.map.retain(|_, e| e.slot.until_ms() > now);
        }
        self.map.len() < cap
    }

    fn remember_fresh(&mut self, id: &str, cap: usize) {
        self.since_sweep += 1;
        self.fresh.push_back(id.to_owned());
        // Ids of sessions established since pile up here: dropped now and then.
        if self.fresh.len() > 2 * cap.max(8) {
            let map = &self.map;
            self.fresh
                .retain(|id| map.get(id).is_some_and(|e| !e.established));
        }
    }
}

/// Sessions in this process's memory, at most `max_sessions` of them (the default store;
/// sessions do not survive a restart and are not shared between instances).
///
/// When it is full, room for a new session is made from expired entries, then from the
/// oldest sessions no client has come back with yet (and logout tombstones): a flood of
/// cookieless writes cannot evict a logged-in session. When every entry is an established
/// session, a new one is refused (503) until one expires or logs out.
///
/// ```
/// use callnext::middleware::session::MemoryStore;
/// let store = MemoryStore::new(100_000);
/// # let _ = store;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    /// Entries per shard at most.
    cap: usize,
    hasher: foldhash::fast::RandomState,
    /// New sessions refused because the store was full of established ones.
    refused: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// A store of at most `max_sessions` sessions (tombstones included).
    pub fn new(max_sessions: u64) -> Self {
        let max = usize::try_from(max_sessions).unwrap_or(usize::MAX).max(1);
        // Few sessions: one shard, so the bound is exact.
        let shards = if max < SHARDS * 64 { 1 } else { SHARDS };
        Self {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::default()).collect(),
                cap: max.div_ceil(shards),
                hasher: foldhash::fast::RandomState::default(),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Entries held now (sessions and tombstones, expired ones until room is needed).
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New sessions refused so far because every entry was an established session.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, Shard> {
        let shards = &self.inner.shards;
        let index = (self.inner.hasher.hash_one(id) as usize) % shards.len();
        shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The store is full of sessions clients hold.
#[derive(Debug)]
struct Full;

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the memory store is full of established sessions; a new one is refused")
    }
}

impl std::error::Error for Full {}

impl SessionStore for MemoryStore {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        let now = now_ms();
        let mut shard = self.shard(id);
        let found = match shard.map.get_mut(id) {
            Some(entry) if entry.slot.until_ms() > now => match &entry.slot {
                Slot::Live(record) => {
                    entry.established = true;
                    Some(record.clone())
                }
                Slot::Gone { .. } => None,
            },
            Some(_) => {
                shard.map.remove(id);
                None
            }
            None => None,
        };
        std::future::ready(Ok(found)).boxed()
    }

    fn create<'a>(
        &'a self,
        id: &'a str,
        record: &'a Record,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = now_ms();
        let cap = self.inner.cap;
        let mut shard = self.shard(id);
        let result = if shard.map.get(id).is_some_and(|e| e.slot.until_ms() > now) {
            Ok(false)
        } else if shard.map.contains_key(id) || shard.make_room(cap, now) {
            shard.map.insert(
                id.to_owned(),
                Entry {
                    slot: Slot::Live(record.clone()),
                    established: false,
                },
            );
            shard.remember_fresh(id, cap);
            Ok(true)
        } else {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            Err(StoreError(Box::new(Full)))
        };
        std::future::ready(result).boxed()
    }

    fn save<'a>(
        &'a self,
        id: &'a str,
        record: &'a Record,
        expected: u64,
    ) -> BoxFuture<'a, Result<Saved, StoreError>> {
        let now = now_ms();
        let mut shard = self.shard(id);
        let answer = match shard.map.get_mut(id) {
            Some(Entry {
                slot: Slot::Live(current),
                ..
            }) if current.expires_ms > now => {
                if current.version == expected {
                    let mut next = record.clone();
                    next.version = expected + 1;
                    let saved = Saved::Saved(next.version);
                    *current = next;
                    saved
                } else {
                    Saved::Conflict(current.clone())
                }
            }
            _ => Saved::Gone,
        };
        std::future::ready(Ok(answer)).boxed()
    }

    fn destroy<'a>(
        &'a self,
        id: &'a str,
        tombstone_until_ms: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let now = now_ms();
        let cap = self.inner.cap;
        let mut shard = self.shard(id);
        // A tombstone stops a late writer; dropped to make room, it leaves nothing a writer
        // could bring back either (a save finds no live session).
        if shard.map.contains_key(id) || shard.make_room(cap, now) {
            shard.map.insert(
                id.to_owned(),
                Entry {
                    slot: Slot::Gone {
                        until_ms: tombstone_until_ms,
                    },
                    established: false,
                },
            );
            shard.remember_fresh(id, cap);
        }
        std::future::ready(Ok(())).boxed()
    }
}
