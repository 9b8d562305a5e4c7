//! The blocking detector's record: events per boundary since a stack was built, and the
//! [`BlockingReport`] tests assert on.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::ticks::clock;

/// How often, at most, one middleware's blocking warning is logged.
const WARN_INTERVAL_NS: u64 = 1_000_000_000;

/// Blocking events of one middleware (or the app) since the stack was built.
#[derive(Default)]
pub(crate) struct BlockingStats {
    events: AtomicU64,
    worst_ns: AtomicU64,
    last_warn_ns: AtomicU64,
    suppressed: AtomicU64,
    last: Mutex<Option<(String, String)>>,
}

impl BlockingStats {
    /// Records `events` blocking polls of one request, the worst `worst` long, and logs a
    /// warning unless one was logged for this middleware within the last second.
    pub(crate) fn record(
        &self,
        name: &str,
        events: u64,
        worst: Duration,
        method: &str,
        route: &str,
    ) {
        let worst_ns = u64::try_from(worst.as_nanos()).unwrap_or(u64::MAX);
        self.events.fetch_add(events, Relaxed);
        self.worst_ns.fetch_max(worst_ns, Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((method.to_owned(), route.to_owned()));
        }
        let now = clock()
            .delta_as_nanos(0, clock().raw())
            .max(WARN_INTERVAL_NS);
        let last_warn = self.last_warn_ns.load(Relaxed);
        if now.saturating_sub(last_warn) >= WARN_INTERVAL_NS
            && self
                .last_warn_ns
                .compare_exchange(last_warn, now, Relaxed, Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Relaxed);
            tracing::warn!(
                middleware = name,
                route,
                method,
                duration_ms = worst.as_secs_f64() * 1000.0,
                blocking_polls = events,
                suppressed_since_last_warning = suppressed,
                "middleware blocked the runtime: a single poll ran {:.1} ms without yielding",
                worst.as_secs_f64() * 1000.0,
            );
        } else {
            self.suppressed.fetch_add(events, Relaxed);
        }
    }

    /// Blocking polls since the stack was built, and the longest of them.
    pub(crate) fn totals(&self) -> (u64, Duration) {
        (
            self.events.load(Relaxed),
            Duration::from_nanos(self.worst_ns.load(Relaxed)),
        )
    }

    fn snapshot(&self, name: &str) -> Option<BlockingEntry> {
        let events = self.events.load(Relaxed);
        (events > 0).then(|| {
            let last = self.last.lock().ok().and_then(|l| l.clone());
            BlockingEntry {
                name: name.to_owned(),
                events,
                worst: Duration::from_nanos(self.worst_ns.load(Relaxed)),
                last_method: last.as_ref().map(|l| l.0.clone()).unwrap_or_default(),
                last_route: last.map(|l| l.1).unwrap_or_default(),
            }
        })
    }
}

/// The blocking events a stack has seen since it was built, per middleware.
///
/// Get one from [`Stack::blocking_report`](crate::Stack::blocking_report). In tests,
/// [`BlockingReport::assert_clean`] fails with the offending middlewares named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockingReport {
    entries: Vec<BlockingEntry>,
}

/// One middleware's line in a [`BlockingReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingEntry {
    /// The middleware's name (`app` for the router and handlers).
    pub name: String,
    /// How many polls crossed the threshold.
    pub events: u64,
    /// The longest single exclusive poll.
    pub worst: Duration,
    /// The method of the latest blocking request.
    pub last_method: String,
    /// The route template of the latest blocking request.
    pub last_route: String,
}

impl BlockingReport {
    pub(crate) fn collect<'a>(stats: impl Iterator<Item = (&'a str, &'a BlockingStats)>) -> Self {
        Self {
            entries: stats.filter_map(|(name, s)| s.snapshot(name)).collect(),
        }
    }

    /// The middlewares that blocked, in stack order.
    pub fn entries(&self) -> &[BlockingEntry] {
        &self.entries
    }

    /// Whether nothing blocked.
    pub fn is_clean(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of the middleware named `name`, if it blocked.
    pub fn get(&self, name: &str) -> Option<&BlockingEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Panics, naming each middleware that blocked, unless nothing did.
    ///
    /// # Panics
    ///
    /// When any middleware blocked.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "the stack blocked the runtime:\n{self}");
    }
}

impl fmt::Display for BlockingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return writeln!(f, "no blocking events");
        }
        for e in &self.entries {
            writeln!(
                f,
                "middleware `{}`: {} blocking poll(s), worst {:.1} ms, latest on {} {}",
                e.name,
                e.events,
                e.worst.as_secs_f64() * 1000.0,
                e.last_method,
                e.last_route
            )?;
        }
        Ok(())
    }
}
