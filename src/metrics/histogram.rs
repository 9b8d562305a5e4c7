//! Fixed-bucket histograms recorded with two relaxed atomic adds, and their exposition.
//!
//! Written by hand: the exporter's own histograms buffer every sample until an upkeep pass
//! folds them in, which was the largest cost of the metrics at 100k requests/s and stalled the
//! core the upkeep ran on.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::clock::ticks::{ns_to_ticks, ticks_to_duration};

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

/// A histogram with fixed bucket bounds, recorded in clock ticks (no conversion per sample)
/// and exposed in seconds.
pub(crate) struct Histogram {
    bounds_ns: &'static [u64],
    bounds_ticks: Box<[u64]>,
    counts: Box<[AtomicU64]>,
    sum_ticks: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds_ns: &'static [u64]) -> Self {
        Self {
            bounds_ns,
            bounds_ticks: bounds_ns.iter().map(|&ns| ns_to_ticks(ns)).collect(),
            counts: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ticks: AtomicU64::new(0),
        }
    }

    /// Records one sample of `ticks` of the instrumentation clock.
    #[inline]
    pub(crate) fn record_ticks(&self, ticks: u64) {
        let bucket = self.bounds_ticks.partition_point(|&bound| bound < ticks);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_ticks.fetch_add(ticks, Relaxed);
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
            let sum = ticks_to_duration(h.sum_ticks.load(Relaxed)).as_secs_f64();
            let _ = writeln!(out, "{name}_sum{{{pairs}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{pairs}}} {cumulative}");
        }
        out.push('\n');
    }
}

fn seconds(ns: u64) -> String {
    (ns as f64 / 1e9).to_string()
}
