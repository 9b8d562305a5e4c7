//! A request's per-boundary figures, as the stack's instrumentation recorded them: the
//! middlewares' spans or events.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A request's per-boundary figures, read from the stack's instrumentation.
pub(crate) struct Timings<'a> {
    pub(crate) names: &'a [Box<str>],
    pub(crate) slots: &'a [crate::instrument::request::Slot],
    pub(crate) spans: &'a [crate::instrument::timings::Span],
    pub(crate) threshold: u64,
}

/// One boundary's place and figures in a request (its name by index: kept in a thread's
/// scratch between requests).
pub(super) struct EntryTiming {
    pub(super) index: usize,
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) exclusive_ns: u64,
    pub(super) wall_ns: u64,
    /// The longest poll, in ticks (converted only for a blocking event).
    pub(super) worst: u64,
    pub(super) blocking: bool,
}

impl Timings<'_> {
    /// Whether a poll reached the blocking threshold (read without building the entries, as
    /// the requests that are not kept need no more).
    pub(super) fn blocked(&self) -> bool {
        self.threshold > 0
            && self
                .slots
                .iter()
                .any(|s| s.worst.load(std::sync::atomic::Ordering::Relaxed) >= self.threshold)
    }

    /// The boundaries that ran, in stack order.
    pub(super) fn entries(&self, out: &mut Vec<EntryTiming>) {
        use std::sync::atomic::Ordering::Relaxed;
        let walls = crate::instrument::timings::walls_excluding_inner(self.slots, self.spans);
        for ((index, slot), wall) in self.slots.iter().enumerate().zip(walls) {
            if !slot.ran() {
                continue;
            }
            let first = slot.first.load(Relaxed);
            let worst = slot.worst.load(Relaxed);
            out.push(EntryTiming {
                index,
                first,
                last: slot.last.load(Relaxed).max(first),
                exclusive_ns: ticks_to_ns(slot.exclusive.load(Relaxed)),
                wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
                worst,
                blocking: self.threshold > 0 && worst >= self.threshold,
            });
        }
    }
}
