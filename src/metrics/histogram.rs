//! Fixed-bucket histograms recorded with two relaxed atomic adds, and their exposition.
//!
//! Written by hand: the exporter's own histograms buffer every sample until an upkeep pass
//! folds them in, which was the largest cost of the metrics at 100k requests/s and stalled the
//! core the upkeep ran on.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Bucket bounds in nanoseconds: 0.5 ms to 10 s.
pub(crate) const REQUEST_BUCKETS_NS: &[u64] = &[
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Bucket bounds in nanoseconds: 10 µs to 0.5 s.
pub(crate) const POLL_BUCKETS_NS: &[u64] = &[
    10_000,
    50_000,
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
];

/// A histogram with fixed bucket bounds (nanoseconds), exposed in seconds.
pub(crate) struct Histogram {
    bounds_ns: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds_ns: &'static [u64]) -> Self {
        Self {
            bounds_ns,
            counts: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn record(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_ns.partition_point(|&bound| bound < ns);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }
}

pub(crate) type Labels = Vec<(&'static str, String)>;

/// One histogram metric: its name, help and every labelled series.
pub(crate) struct Family {
    pub(crate) name: &'static str,
    help: &'static str,
    bounds_ns: &'static [u64],
    series: Vec<(Labels, Arc<Histogram>)>,
}

impl Family {
    pub(crate) fn new(name: &'static str, help: &'static str, bounds_ns: &'static [u64]) -> Self {
        Self {
            name,
            help,
            bounds_ns,
            series: Vec::new(),
        }
    }

    /// The series with `labels`, created on first use.
    pub(crate) fn series(&mut self, labels: Labels) -> Arc<Histogram> {
        if let Some((_, h)) = self.series.iter().find(|(l, _)| *l == labels) {
            return Arc::clone(h);
        }
        let h = Arc::new(Histogram::new(self.bounds_ns));
        self.series.push((labels, Arc::clone(&h)));
        h
    }

    /// Appends the family in the Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        if self.series.is_empty() {
            return;
        }
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (labels, h) in &self.series {
            let mut pairs = String::new();
            for (key, value) in labels {
                let value = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(pairs, "{key}=\"{value}\",");
            }
            let mut cumulative = 0;
            for (i, count) in h.counts.iter().enumerate() {
                cumulative += count.load(Relaxed);
                let le = h
                    .bounds_ns
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| seconds(*b));
                let _ = writeln!(out, "{name}_bucket{{{pairs}le=\"{le}\"}} {cumulative}");
            }
            let pairs = pairs.trim_end_matches(',');
            let sum = seconds(h.sum_ns.load(Relaxed));
            let _ = writeln!(out, "{name}_sum{{{pairs}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{pairs}}} {cumulative}");
        }
        out.push('\n');
    }
}

fn seconds(ns: u64) -> String {
    (ns as f64 / 1e9).to_string()
}
