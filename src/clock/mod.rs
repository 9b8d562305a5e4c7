//! The clocks, one place for all of them.
//!
//! - [`wall_ms`]: wall time for what is compared across instances (a session's or an API key's
//!   expiry kept in a shared store). Read once from the system, then advanced by tokio's clock,
//!   so a test that pauses time (`tokio::time::pause`) moves sessions and keys towards their
//!   expiry.
//! - [`wall`] / [`wall_ns`]: the system's time as it is, for what is written down (log and span
//!   timestamps): one read, no arithmetic on the request's path.
//! - [`Monotonic`]: microseconds since a start, on tokio's clock, for durations a battery keeps
//!   in its own state (a rate limiter's buckets, a store guard's cooldown); paused in tests
//!   likewise.
//! - [`ticks`]: the CPU's time stamp counter, for the per-boundary timings of the
//!   instrumentation, where a read must cost a few nanoseconds. Not paused in tests.

pub(crate) mod ticks;

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock's anchor: the system's time once, and tokio's instant at that moment.
struct Anchor {
    epoch_ms: u64,
    instant: tokio::time::Instant,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        epoch_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        instant: tokio::time::Instant::now(),
    })
}

/// The system's time now, for timestamps.
pub(crate) fn wall() -> SystemTime {
    SystemTime::now()
}

/// Wall time now, in milliseconds since the Unix epoch, on tokio's clock (for expiry).
pub(crate) fn wall_ms() -> u64 {
    let anchor = anchor();
    anchor
        .epoch_ms
        .saturating_add(u64::try_from(anchor.instant.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// The system's time now, in nanoseconds since the Unix epoch, for timestamps.
#[cfg_attr(not(any(feature = "otel", feature = "log-shipping")), allow(dead_code))]
pub(crate) fn wall_ns() -> u64 {
    wall()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A monotonic clock counting microseconds from its creation, on tokio's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Monotonic {
    base: tokio::time::Instant,
}

impl Monotonic {
    /// A clock starting now.
    pub(crate) fn new() -> Self {
        Self {
            base: tokio::time::Instant::now(),
        }
    }

    /// Microseconds since the clock's start, plus one: never 0, so 0 can mean "never".
    #[inline]
    pub(crate) fn micros(&self) -> u64 {
        // Seconds and micros apart: `as_micros` divides a u128, a good part of a rate check.
        let elapsed = self.base.elapsed();
        elapsed.as_secs() * 1_000_000 + u64::from(elapsed.subsec_micros()) + 1
    }
}

/// Admits at most a number of events a second (a fixed window on the monotonic clock): one
/// atomic word, the second and the count in it.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct PerSecond {
    clock: Monotonic,
    /// The window's second (high 32 bits) and the events admitted in it (low 32).
    state: std::sync::atomic::AtomicU64,
}

impl Default for PerSecond {
    fn default() -> Self {
        Self {
            clock: Monotonic::new(),
            state: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[cfg_attr(not(feature = "otel"), allow(dead_code))]
impl PerSecond {
    /// Whether one more event fits this second's `max`.
    pub(crate) fn admit(&self, max: u32) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let second = self.clock.micros() / 1_000_000;
        let mut state = self.state.load(Relaxed);
        loop {
            let (at, count) = (state >> 32, state & u64::from(u32::MAX));
            let count = if at == second { count } else { 0 };
            if count >= u64::from(max) {
                return false;
            }
            let next = (second << 32) | (count + 1);
            match self
                .state
                .compare_exchange_weak(state, next, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => state = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_paused_test_clock_moves_wall_and_monotonic_time() {
        let clock = Monotonic::new();
        let (wall_before, micros_before) = (wall_ms(), clock.micros());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(wall_ms() - wall_before >= 3_600_000);
        assert!(clock.micros() - micros_before >= 3_600_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_admits_its_count_each_second() {
        let window = PerSecond::default();
        assert_eq!((0..10).filter(|_| window.admit(3)).count(), 3);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!((0..10).filter(|_| window.admit(3)).count(), 3);
        assert!(!window.admit(0));
    }

    #[test]
    fn wall_time_is_the_systems() {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(wall_ms().abs_diff(system) < 60_000);
        assert!((wall_ns() / 1_000_000).abs_diff(system) < 60_000);
    }
}
