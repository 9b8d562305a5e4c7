//! A log-linear histogram of clock ticks, fine enough to tell a 1 µs middleware from a 3 µs
//! one (the metrics' Prometheus buckets start at 10 µs), recorded with two relaxed adds.
//!
//! Written by hand: the crates that do this (hdrhistogram) need `&mut` or a lock to record,
//! and the page needs neither merging nor serialising, only quantiles of a window.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Values below this are their own bucket.
const EXACT: u64 = 8;
/// Sub-buckets per power of two above `EXACT` (two bits of mantissa: within 25 %).
const SUB_BITS: u32 = 2;
/// Powers of two covered: up to 2^48 ticks (about three days at 1 GHz).
const MAX_EXP: u32 = 48;
pub(super) const BUCKETS: usize =
    EXACT as usize + ((MAX_EXP - 3) as usize + 1) * (1 << SUB_BITS) as usize;

/// Counts of ticks in log-linear buckets.
pub(crate) struct LogHistogram {
    counts: Box<[AtomicU64]>,
}

impl LogHistogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    pub(crate) fn record(&self, ticks: u64) {
        self.counts[bucket(ticks)].fetch_add(1, Relaxed);
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }
}

#[inline]
fn bucket(ticks: u64) -> usize {
    if ticks < EXACT {
        // Lossless: below 8.
        return ticks as usize;
    }
    let exp = 63 - ticks.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let mantissa = (ticks >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    EXACT as usize + ((exp - 3) as usize) * (1 << SUB_BITS) as usize + mantissa as usize
}

/// The middle of a bucket, in ticks.
fn middle(index: usize) -> f64 {
    if index < EXACT as usize {
        return index as f64;
    }
    let i = index - EXACT as usize;
    let exp = (i >> SUB_BITS) as u32 + 3;
    let mantissa = (i & ((1 << SUB_BITS) - 1)) as u64;
    let low = ((1u64 << SUB_BITS) + mantissa) << (exp - SUB_BITS);
    let width = 1u64 << (exp - SUB_BITS);
    low as f64 + width as f64 / 2.0
}

/// The `q` quantile (0 to 1) of bucket counts, in ticks; `None` without samples.
pub(crate) fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the sample, 1-based: ceil(q * total).
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, &count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(middle(i));
        }
    }
    None
}

/// `now - before`, bucket by bucket (a window of samples between two readings).
pub(crate) fn minus(now: &[u64], before: &[u64]) -> Vec<u64> {
    now.iter()
        .zip(before.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a.saturating_sub(*b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_within_a_quarter() {
        let mut last = 0;
        for ticks in (0..100_000u64).chain([1 << 30, (1 << 40) + 12345, u64::MAX]) {
            let b = bucket(ticks);
            assert!(b >= last || ticks > 100_000, "bucket of {ticks} went back");
            assert!(b < BUCKETS);
            last = b;
            if (EXACT..1 << 40).contains(&ticks) {
                let mid = middle(b);
                let error = (mid - ticks as f64).abs() / ticks as f64;
                assert!(error <= 0.125 + 1e-9, "{ticks} read as {mid}");
            }
        }
    }

    #[test]
    fn quantiles_of_known_samples() {
        let h = LogHistogram::new();
        for _ in 0..90 {
            h.record(1_000);
        }
        for _ in 0..10 {
            h.record(1_000_000);
        }
        let counts = h.counts();
        let p50 = quantile(&counts, 0.5).unwrap();
        let p99 = quantile(&counts, 0.99).unwrap();
        assert!((900.0..1100.0).contains(&p50), "{p50}");
        assert!((900_000.0..1_100_000.0).contains(&p99), "{p99}");
        assert_eq!(quantile(&[0; 4], 0.5), None);
        let later = h.counts();
        h.record(5);
        assert_eq!(minus(&h.counts(), &later).iter().sum::<u64>(), 1);
    }
}
