//! [`StoreGuard`]: the one guard around every store call of every battery: a per-call
//! timeout, a circuit breaker, and the state changes logged once each.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Failures in a row that open the breaker.
const TRIPS_AFTER: u32 = 3;
/// How long an open breaker skips the store before letting one call try it again.
pub(crate) const COOLDOWN: Duration = Duration::from_millis(500);

/// Why a guarded call gave no answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refused<E> {
    /// The breaker is open: the store failed several times in a row and is left alone until
    /// a cooldown ends; the call was not made.
    Open,
    /// No answer within the timeout (the store is stalled, or slow).
    Timeout(Duration),
    /// The store answered with an error, or could not be reached.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for Refused<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("not asked: the store failed repeatedly (circuit open)"),
            Self::Timeout(after) => write!(f, "no answer within {after:?}"),
            Self::Failed(err) => err.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Refused<E> {}

/// The guard around a store: every call gets at most `timeout`; after three failures in a row
/// the breaker opens and calls fail at once (no waiting on a store that is down) until, every
/// half second, one call is let through to try it again; one success closes it. Each change
/// ("failed", "back") is logged once, with the entry and the store.
///
/// Every battery with a store puts its calls through one (the rate limiter's Redis, the
/// session stores, API keys); the battery's failure policy then decides what a refusal means
/// (fail open, closed, a local fallback, a 503). A middleware of your own can do the same:
///
/// ```
/// use std::time::Duration;
/// use callnext::battery::{Refused, StoreGuard};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let guard = StoreGuard::new("flags", "redis://127.0.0.1:6379", Duration::from_millis(200));
/// let stalled = std::future::pending::<Result<u8, std::io::Error>>();
/// assert!(matches!(guard.call("my_entry", stalled).await, Err(Refused::Timeout(_))));
/// let ok = guard.call("my_entry", async { Ok::<_, std::io::Error>(1) }).await;
/// assert_eq!(ok.unwrap(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct StoreGuard {
    what: &'static str,
    url: String,
    timeout: Duration,
    failures: AtomicU32,
    /// While open: microseconds on `clock` until the next try; 0 when closed.
    open_until: AtomicU64,
    /// Whether the last change logged was "failed" (so each change is logged once).
    down: AtomicBool,
    clock: crate::clock::Monotonic,
}

impl StoreGuard {
    /// A guard for the store `what` (its kind, for logs) at `url` (shown without passwords),
    /// with calls cut at `timeout`.
    pub fn new(what: &'static str, url: &str, timeout: Duration) -> Self {
        Self {
            what,
            url: crate::redact::redact_urls(url),
            timeout,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            down: AtomicBool::new(false),
            clock: crate::clock::Monotonic::new(),
        }
    }

    /// The time each call gets.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the breaker is open: calls are refused until a cooldown ends (or one is trying
    /// the store again).
    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Relaxed) != 0
    }

    fn now_us(&self) -> u64 {
        self.clock.micros()
    }

    /// Whether the breaker lets a call through: closed, or open with its cooldown over and
    /// this call the one chosen to try.
    fn admit(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_us();
        now >= until
            && self
                .open_until
                .compare_exchange(
                    until,
                    now + COOLDOWN.as_micros() as u64,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Runs `call` under the guard, for the entry named `entry` (for logs): its answer, or
    /// why there is none.
    ///
    /// # Errors
    ///
    /// [`Refused::Open`] without calling while the breaker is open, [`Refused::Timeout`] when
    /// `call` takes longer than the timeout (it is dropped), [`Refused::Failed`] with its
    /// error.
    pub async fn call<T, E, F>(&self, entry: &str, call: F) -> Result<T, Refused<E>>
    where
        F: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        if !self.admit() {
            return Err(Refused::Open);
        }
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(Refused::Failed(err)),
            Err(_) => Err(Refused::Timeout(self.timeout)),
        };
        match &result {
            Ok(_) => self.succeeded(entry),
            Err(err) => self.failed(entry, err),
        }
        result
    }

    fn succeeded(&self, entry: &str) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Release);
        }
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                middleware = entry,
                store = %self.url,
                "{} is back: using it again",
                self.what
            );
        }
    }

    fn failed<E: fmt::Display>(&self, entry: &str, err: &Refused<E>) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= TRIPS_AFTER || self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(
                self.now_us() + COOLDOWN.as_micros() as u64,
                Ordering::Release,
            );
        }
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                middleware = entry,
                store = %self.url,
                error = %err,
                "{} failed: applying the failure policy until it answers again",
                self.what
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = Result<u8, std::io::Error>;

    fn failing() -> std::future::Ready<Answer> {
        std::future::ready(Err(std::io::Error::other("refused")))
    }

    #[tokio::test(start_paused = true)]
    async fn three_failures_open_the_breaker_and_one_call_tries_after_the_cooldown() {
        let guard = StoreGuard::new("test store", "redis://:pw@h/", Duration::from_secs(1));
        for _ in 0..3 {
            assert!(matches!(
                guard.call("e", failing()).await,
                Err(Refused::Failed(_))
            ));
        }
        assert!(guard.is_open());
        // Refused at once, without calling.
        let called = std::sync::atomic::AtomicBool::new(false);
        let refused = guard
            .call("e", async {
                called.store(true, Ordering::SeqCst);
                Ok::<u8, std::io::Error>(1)
            })
            .await;
        assert!(matches!(refused, Err(Refused::Open)));
        assert!(!called.load(Ordering::SeqCst));
        tokio::time::advance(COOLDOWN).await;
        assert_eq!(guard.call("e", async { Answer::Ok(7) }).await.unwrap(), 7);
        assert!(!guard.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_call_costs_the_timeout_and_counts_as_a_failure() {
        let guard = StoreGuard::new("test store", "redis://h/", Duration::from_millis(250));
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            let stalled = std::future::pending::<Answer>();
            assert!(matches!(
                guard.call("e", stalled).await,
                Err(Refused::Timeout(_))
            ));
        }
        assert_eq!(started.elapsed(), Duration::from_millis(750));
        assert!(guard.is_open());
        assert_eq!(guard.url, "redis://h/");
    }
}
