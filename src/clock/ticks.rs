//! Ticks: the clock every instrumented boundary reads, the CPU's invariant TSC where it has
//! one (`quanta`). The cheapest to read; for durations measured inside one process.

use std::sync::OnceLock;
use std::time::Duration;

pub(crate) fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// The clock's raw ticks now; never 0, so 0 can mean "not yet".
#[inline]
pub(crate) fn now() -> u64 {
    clock().raw().max(1)
}

/// Converts nanoseconds to the clock's raw ticks (the inverse of `delta_as_nanos`).
pub(crate) fn ns_to_ticks(ns: u64) -> u64 {
    let clock = clock();
    let (mut lo, mut hi) = (0u64, 1u64 << 62);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if clock.delta_as_nanos(1, 1 + mid) >= ns {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

pub(crate) fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_nanos(ticks_to_ns(ticks))
}

/// Ticks as nanoseconds.
#[inline]
pub(crate) fn ticks_to_ns(ticks: u64) -> u64 {
    clock().delta_as_nanos(1, ticks.saturating_add(1))
}

pub(crate) fn duration_to_ticks(d: Duration) -> u64 {
    ns_to_ticks(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip() {
        for ns in [1_000u64, 10_000_000, 2_000_000_000] {
            let back = ticks_to_duration(ns_to_ticks(ns)).as_nanos() as u64;
            assert!(back >= ns && back - ns <= 2, "{ns} -> {back}");
        }
    }
}
