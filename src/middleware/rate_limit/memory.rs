//! The memory store: a bounded, sharded map from caller to the policies' TATs.
//!
//! Written by hand rather than on a cache crate: a check must stay under 100 ns with 100,000
//! active callers (`cargo bench --bench stack -- rate_limit`), and it is a read-modify-write
//! of a few integers under one lock, which general caches make several times dearer. No task
//! runs per key: an entry is worthless once its bucket is full again, so a shard at its bound
//! first drops those, then (under a flood of distinct callers) the callers closest to a full
//! bucket, whose forgetting matters least.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use hashbrown::HashTable;

use super::gcra::{decide, refund, Decision, Rate, MAX_POLICIES};
use crate::battery::Caller;

/// Shards: enough that two cores rarely meet on one lock.
const SHARDS: usize = 64;

/// An address as two words: 8-byte aligned, so an entry of one policy is 24 bytes.
type Ip = [u64; 2];

/// Keyed by a hash computed once per check (it also picks the shard); an entry is the caller
/// and its `N` policies' TATs.
type Map<K, const N: usize> = HashTable<(K, [u64; N])>;

/// Addresses and text keys apart: an address needs no pointer to follow.
#[derive(Debug)]
struct Shard<const N: usize> {
    ips: Map<Ip, N>,
    texts: Map<Box<str>, N>,
}

impl<const N: usize> Default for Shard<N> {
    fn default() -> Self {
        Self {
            ips: HashTable::new(),
            texts: HashTable::new(),
        }
    }
}

/// The shards, with entries as wide as the limiter's policies (most limiters have one, and
/// a narrower entry means fewer cache misses with many callers).
#[derive(Debug)]
enum Shards {
    One(Box<[Mutex<Shard<1>>]>),
    Two(Box<[Mutex<Shard<2>>]>),
    Three(Box<[Mutex<Shard<3>>]>),
    Four(Box<[Mutex<Shard<MAX_POLICIES>>]>),
}

fn shards<const N: usize>() -> Box<[Mutex<Shard<N>>]> {
    (0..SHARDS).map(|_| Mutex::default()).collect()
}

/// The memory store of [`RateLimit`](super::RateLimit); also the `local` fallback of the
/// Redis store.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    shards: Shards,
    shard_cap: usize,
    hasher: foldhash::fast::RandomState,
    clock: crate::clock::Monotonic,
    evicted: AtomicU64,
}

impl MemoryStore {
    /// A store holding at most about `max_keys` callers, for limiters of `policies` policies.
    pub(crate) fn new(max_keys: usize, policies: usize) -> Self {
        let shard_cap = max_keys.div_ceil(SHARDS).max(8);
        Self {
            shards: match policies {
                0 | 1 => Shards::One(shards()),
                2 => Shards::Two(shards()),
                3 => Shards::Three(shards()),
                _ => Shards::Four(shards()),
            },
            shard_cap,
            hasher: foldhash::fast::RandomState::default(),
            clock: crate::clock::Monotonic::new(),
            evicted: AtomicU64::new(0),
        }
    }

    /// Microseconds on the store's clock (tokio's, so a paused test clock drives it).
    pub(crate) fn now_us(&self) -> u64 {
        self.clock.micros()
    }

    /// Decides a request of `cost` from `caller` against `rates`, now.
    pub(crate) fn check(&self, caller: &Caller, rates: &[Rate], cost: u64) -> Decision {
        self.check_at(caller, rates, cost, self.now_us())
    }

    /// Gives back a charge of `cost` that `check` took from `caller` (see [`refund`]).
    pub(crate) fn refund(&self, caller: &Caller, rates: &[Rate], cost: u64) {
        self.run_at(caller, rates, cost, self.now_us(), true);
    }

    fn check_at(&self, caller: &Caller, rates: &[Rate], cost: u64, now: u64) -> Decision {
        self.run_at(caller, rates, cost, now, false)
    }

    fn run_at(
        &self,
        caller: &Caller,
        rates: &[Rate],
        cost: u64,
        now: u64,
        refunding: bool,
    ) -> Decision {
        let hash = self.hasher.hash_one(caller);
        // Bits the shard's table does not use for its buckets (low) or tags (top seven).
        let index = ((hash >> 40) as usize) % SHARDS;
        let at = At {
            hash,
            rates,
            cost,
            now,
            cap: self.shard_cap,
            refunding,
        };
        let (decision, evicted) = match &self.shards {
            Shards::One(s) => self.check_in(&s[index], caller, &at),
            Shards::Two(s) => self.check_in(&s[index], caller, &at),
            Shards::Three(s) => self.check_in(&s[index], caller, &at),
            Shards::Four(s) => self.check_in(&s[index], caller, &at),
        };
        if evicted > 0 {
            self.evicted.fetch_add(evicted, Ordering::Relaxed);
        }
        decision
    }

    fn check_in<const N: usize>(
        &self,
        shard: &Mutex<Shard<N>>,
        caller: &Caller,
        at: &At<'_>,
    ) -> (Decision, u64) {
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match caller {
            Caller::Ip(ip) => {
                let key = [(*ip >> 64) as u64, *ip as u64];
                decide_in(
                    &mut shard,
                    |s| &mut s.ips,
                    &key,
                    at,
                    |k| {
                        self.hasher
                            .hash_one(u128::from(k[0]) << 64 | u128::from(k[1]))
                    },
                )
            }
            Caller::Text(text) => decide_in(
                &mut shard,
                |s| &mut s.texts,
                text,
                at,
                |k| self.hasher.hash_one(&**k),
            ),
        }
    }

    /// Callers held now (expired entries included until their shard needs the room).
    pub(crate) fn len(&self) -> usize {
        fn sum<const N: usize>(shards: &[Mutex<Shard<N>>]) -> usize {
            shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
                .sum()
        }
        match &self.shards {
            Shards::One(s) => sum(s),
            Shards::Two(s) => sum(s),
            Shards::Three(s) => sum(s),
            Shards::Four(s) => sum(s),
        }
    }

    /// The room the shards have allocated, in entries.
    #[cfg(test)]
    fn allocated(&self) -> usize {
        fn sum<const N: usize>(shards: &[Mutex<Shard<N>>]) -> usize {
            shards
                .iter()
                .map(|s| {
                    let s = s.lock().unwrap_or_else(PoisonError::into_inner);
                    s.ips.capacity() + s.texts.capacity()
                })
                .sum()
        }
        match &self.shards {
            Shards::One(s) => sum(s),
            Shards::Two(s) => sum(s),
            Shards::Three(s) => sum(s),
            Shards::Four(s) => sum(s),
        }
    }

    /// Callers forgotten while their bucket was not yet full, to stay within the bound.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// One check's inputs.
struct At<'a> {
    hash: u64,
    rates: &'a [Rate],
    cost: u64,
    now: u64,
    cap: usize,
    /// Giving back a charge instead of deciding.
    refunding: bool,
}

/// One decision in one of a shard's maps; also how many live entries had to go.
fn decide_in<K, Q, const N: usize>(
    shard: &mut Shard<N>,
    map: impl Fn(&mut Shard<N>) -> &mut Map<K, N>,
    key: &Q,
    at: &At<'_>,
    rehash: impl Fn(&K) -> u64,
) -> (Decision, u64)
where
    K: Eq + Clone + std::borrow::Borrow<Q>,
    Q: Eq + ToOwned<Owned = K> + ?Sized,
{
    let n = at.rates.len().min(N);
    let mut tats = [None; MAX_POLICIES];
    let slot = map(shard).find_mut(at.hash, |(k, _)| k.borrow() == key);
    if at.refunding {
        if let Some((_, stored)) = slot {
            refund(&mut stored[..n], at.now, &at.rates[..n], at.cost);
        }
        return (Decision::none(), 0);
    }
    if let Some((_, stored)) = &slot {
        for (tat, stored) in tats.iter_mut().zip(stored.iter()) {
            *tat = Some(*stored);
        }
    }
    let decision = decide(&mut tats[..n], at.now, &at.rates[..n], at.cost);
    if !decision.allowed || at.cost == 0 {
        return (decision, 0);
    }
    let mut entry = [0u64; N];
    for (stored, tat) in entry.iter_mut().zip(&tats[..n]) {
        *stored = tat.unwrap_or(0);
    }
    if let Some((_, slot)) = slot {
        *slot = entry;
        return (decision, 0);
    }
    let mut evicted = 0;
    if shard.len() >= at.cap {
        evicted = shard.make_room(at.cap, at.now);
    }
    map(shard).insert_unique(at.hash, (key.to_owned(), entry), |(k, _)| rehash(k));
    (decision, evicted)
}

/// The largest TAT: when the entry is worth nothing any more.
fn full_at<const N: usize>(tats: &[u64; N]) -> u64 {
    tats.iter().copied().max().unwrap_or(0)
}

impl<const N: usize> Shard<N> {
    fn len(&self) -> usize {
        self.ips.len() + self.texts.len()
    }

    /// Drops the expired entries; if that frees less than an eighth of the shard, also the
    /// entries closest to expiring, down to seven eighths. Returns how many live ones went.
    /// Amortised: after a pass, at least `cap / 8` inserts happen before the next.
    fn make_room(&mut self, cap: usize, now: u64) -> u64 {
        self.ips.retain(|(_, e)| full_at(e) > now);
        self.texts.retain(|(_, e)| full_at(e) > now);
        let keep = cap - cap / 8;
        if self.len() <= keep {
            return 0;
        }
        let mut ends: Vec<u64> = self
            .ips
            .iter()
            .map(|(_, e)| full_at(e))
            .chain(self.texts.iter().map(|(_, e)| full_at(e)))
            .collect();
        let cut = ends.len() - keep;
        let (_, threshold, _) = ends.select_nth_unstable(cut - 1);
        let threshold = *threshold;
        let before = self.len();
        self.ips.retain(|(_, e)| full_at(e) > threshold);
        self.texts.retain(|(_, e)| full_at(e) > threshold);
        (before - self.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: [Rate; 1] = [Rate {
        interval_us: 60_000_000,
        burst: 2,
    }];

    #[test]
    fn a_million_callers_stay_within_the_bound() {
        let store = MemoryStore::new(10_000, 1);
        let now = 1_000_000;
        for i in 0..1_000_000u128 {
            let decision = store.check_at(&Caller::Ip(i), &RATE, 1, now);
            assert!(decision.allowed);
        }
        assert!(store.len() <= 10_000 + SHARDS, "{}", store.len());
        assert!(store.allocated() <= 4 * 10_000, "{}", store.allocated());
        assert!(store.evicted() >= 1_000_000 - 10_000 - SHARDS as u64);
        // A caller seen lately is still remembered.
        let last = Caller::Ip(999_999);
        assert!(store.check_at(&last, &RATE, 1, now).allowed);
        assert!(!store.check_at(&last, &RATE, 1, now).allowed);
    }

    #[test]
    fn expired_callers_go_first() {
        let store = MemoryStore::new(8 * SHARDS, 1);
        for i in 0..10_000u128 {
            // Ten seconds apart; each bucket is full again a minute after its request.
            store.check_at(&Caller::Ip(i), &RATE, 1, 1 + i as u64 * 10_000_000);
        }
        assert_eq!(store.evicted(), 0, "only expired entries had to go");
        assert!(store.len() <= 8 * SHARDS + SHARDS);
    }

    #[test]
    fn denials_write_nothing() {
        let store = MemoryStore::new(100, 1);
        let caller = Caller::Text("user:ann".into());
        assert!(store.check_at(&caller, &RATE, 2, 10).allowed);
        assert!(!store.check_at(&caller, &RATE, 1, 10).allowed);
        assert_eq!(store.len(), 1);
        assert!(store.check_at(&caller, &RATE, 1, 10 + 60_000_000).allowed);
    }
}
