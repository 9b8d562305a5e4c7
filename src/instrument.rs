//! Exclusive poll time per middleware, the blocking detector, and Server-Timing.
//!
//! Every boundary of a stack (each middleware, and the app) reads a TSC-based clock before and
//! after each poll of its future. Inner boundaries report how long their polls took, so each
//! boundary knows the time spent in its *own* code during the poll — its exclusive poll time.
//! A single exclusive poll longer than the stack's blocking threshold is a blocking event: the
//! middleware held the runtime thread, and every other task on it waited.
//!
//! Reading the clock costs a few nanoseconds (`quanta` reads the CPU's invariant TSC where it
//! has one), so instrumentation stays on in production; [`Stack::instrument`] turns it off.
//!
//! [`Stack::instrument`]: crate::Stack::instrument

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::MatchedPath;

/// The default blocking threshold: 10 ms.
///
/// Tokio's guidance is that a task should spend no more than 10 to 100 microseconds between
/// `.await`s. A threshold at that scale would flag ordinary noise on a shared machine (a page
/// fault, the thread being descheduled), so the default sits at 10 ms: a hundred times tokio's
/// upper bound, far above noise, and still well below what a user notices. A synchronous file
/// read, a `std::thread::sleep`, a blocking database driver or a heavy computation all cross it.
pub const DEFAULT_BLOCKING_THRESHOLD: Duration = Duration::from_millis(10);

/// How often, at most, one middleware's blocking warning is logged.
const WARN_INTERVAL_NS: u64 = 1_000_000_000;

pub(crate) fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
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
    Duration::from_nanos(clock().delta_as_nanos(1, 1 + ticks))
}

/// Boundaries whose slots live inline in the request's context, itself inside the request's
/// future: five middlewares and the app. Deeper stacks allocate their slots. More inline slots
/// would push the request's future past the sizes the allocator's per-thread cache serves
/// (see the `request_future_fits_the_allocator_cache` test).
const INLINE_SLOTS: usize = 6;

/// What one request carries through its stack: the timing shared by every boundary it walks
/// through (when instrumentation is on) and the route template the app's router matched.
pub(crate) struct RequestCtx {
    /// Whether the boundaries time their polls.
    pub(crate) timed: bool,
    /// Ticks the boundaries nested inside the one being polled spent in their polls.
    pub(crate) child: AtomicU64,
    pub(crate) threshold_ticks: u64,
    len: usize,
    inline: [Slot; INLINE_SLOTS],
    spilled: Box<[Slot]>,
    route: OnceLock<MatchedPath>,
}

/// Where a request's [`RequestCtx`] lives: inside the request's own future (no allocation), or
/// behind an `Arc` when a tower layer in the stack needs an owned, `'static` handle to it.
// Inline on purpose: boxing it is the allocation this type exists to avoid.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Ctx {
    Inline(RequestCtx),
    Shared(Arc<RequestCtx>),
}

impl std::ops::Deref for Ctx {
    type Target = RequestCtx;

    #[inline]
    fn deref(&self) -> &RequestCtx {
        match self {
            Ctx::Inline(ctx) => ctx,
            Ctx::Shared(ctx) => ctx,
        }
    }
}

/// One boundary's figures for one request, in clock ticks.
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) exclusive: AtomicU64,
    pub(crate) worst_poll: AtomicU64,
    pub(crate) blocking_polls: AtomicU64,
    pub(crate) wall: AtomicU64,
}

impl RequestCtx {
    /// A context for `boundaries` boundaries; untimed ones keep no slots.
    pub(crate) fn new(timed: bool, boundaries: usize, threshold_ticks: u64) -> Self {
        let boundaries = if timed { boundaries } else { 0 };
        let spilled = if boundaries > INLINE_SLOTS {
            (0..boundaries).map(|_| Slot::default()).collect()
        } else {
            Box::default()
        };
        Self {
            timed,
            child: AtomicU64::new(0),
            threshold_ticks,
            len: boundaries,
            inline: Default::default(),
            spilled,
            route: OnceLock::new(),
        }
    }

    /// Records the route template the app's router matched (the first one wins).
    pub(crate) fn set_route(&self, route: MatchedPath) {
        let _ = self.route.set(route);
    }

    /// The route template the app's router matched, if it reported one.
    pub(crate) fn route(&self) -> Option<&MatchedPath> {
        self.route.get()
    }

    /// One slot per boundary: the middlewares in order, then the app.
    pub(crate) fn slots(&self) -> &[Slot] {
        if self.len > INLINE_SLOTS {
            &self.spilled
        } else {
            &self.inline[..self.len]
        }
    }
}

/// Running figures of one boundary while its future is alive.
#[derive(Default)]
pub(crate) struct PollTimer {
    exclusive: u64,
    worst: u64,
    blocking: u64,
    first_start: Option<u64>,
}

impl PollTimer {
    /// Starts a poll: returns the start time and the parent's child-time to restore.
    #[inline]
    pub(crate) fn enter(&mut self, ctx: &RequestCtx) -> (u64, u64) {
        let start = clock().raw();
        self.first_start.get_or_insert(start);
        let saved = ctx.child.load(Relaxed);
        ctx.child.store(0, Relaxed);
        (start, saved)
    }

    /// Ends a poll begun at `start`; on the last poll, `done` publishes the figures.
    #[inline]
    pub(crate) fn exit(
        &mut self,
        ctx: &RequestCtx,
        slot: usize,
        (start, saved): (u64, u64),
        done: bool,
    ) {
        let end = clock().raw();
        let total = end.saturating_sub(start);
        let exclusive = total.saturating_sub(ctx.child.load(Relaxed));
        ctx.child.store(saved + total, Relaxed);
        self.exclusive += exclusive;
        self.worst = self.worst.max(exclusive);
        if exclusive >= ctx.threshold_ticks {
            self.blocking += 1;
        }
        if done {
            if let Some(slot) = ctx.slots().get(slot) {
                slot.exclusive.store(self.exclusive, Relaxed);
                slot.worst_poll.store(self.worst, Relaxed);
                slot.blocking_polls.store(self.blocking, Relaxed);
                let first = self.first_start.unwrap_or(start);
                slot.wall.store(end.saturating_sub(first), Relaxed);
            }
        }
    }
}

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

/// How one boundary spent one request; see [`RequestTimings`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BoundaryTiming {
    /// The middleware's name, or `app`.
    pub name: String,
    /// Time spent inside its own polls (inner layers' polls excluded): CPU or blocking work.
    pub exclusive: Duration,
    /// Its longest single exclusive poll.
    pub worst_poll: Duration,
    /// Wall time from its first poll to its last, minus the inner boundary's: what it waited
    /// for itself, async or not. This is what `Server-Timing` shows.
    pub wall_excluding_inner: Duration,
}

/// Per-boundary timing of one request, attached to the response's extensions when
/// [`Stack::record_timings`](crate::Stack::record_timings) is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTimings {
    /// The middlewares in stack order, then the app.
    pub boundaries: Vec<BoundaryTiming>,
}

impl RequestTimings {
    /// The timing of the boundary named `name`.
    pub fn get(&self, name: &str) -> Option<&BoundaryTiming> {
        self.boundaries.iter().find(|b| b.name == name)
    }
}

/// Wall time of each boundary minus that of the one inside it.
pub(crate) fn walls_excluding_inner(slots: &[Slot]) -> impl Iterator<Item = Duration> + '_ {
    slots.iter().enumerate().map(move |(i, slot)| {
        let inner = slots.get(i + 1).map_or(0, |s| s.wall.load(Relaxed));
        ticks_to_duration(slot.wall.load(Relaxed).saturating_sub(inner))
    })
}

/// A `Server-Timing` header value: `name;dur=12.3, ..., app;dur=100.4` (milliseconds).
pub(crate) fn server_timing<'a>(names: impl Iterator<Item = &'a str>, slots: &[Slot]) -> String {
    let mut out = String::new();
    for (name, dur) in names.zip(walls_excluding_inner(slots)) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        push_token(&mut out, name);
        out.push_str(&format!(";dur={:.1}", dur.as_secs_f64() * 1000.0));
    }
    out
}

/// Appends `name` as an RFC 9110 token: characters outside `tchar` become `_`.
fn push_token(out: &mut String, name: &str) {
    if name.is_empty() {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c) {
            c
        } else {
            '_'
        }
    }));
}

/// The figures of a finished request, for reporting.
pub(crate) fn boundary_timings<'a>(
    names: impl Iterator<Item = &'a str>,
    slots: &[Slot],
) -> RequestTimings {
    RequestTimings {
        boundaries: names
            .zip(slots)
            .zip(walls_excluding_inner(slots))
            .map(|((name, slot), wall)| BoundaryTiming {
                name: name.to_owned(),
                exclusive: ticks_to_duration(slot.exclusive.load(Relaxed)),
                worst_poll: ticks_to_duration(slot.worst_poll.load(Relaxed)),
                wall_excluding_inner: wall,
            })
            .collect(),
    }
}

/// Shared handle type for per-boundary stats.
pub(crate) type SharedStats = Arc<BlockingStats>;

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

    #[test]
    fn tokens_are_sanitised() {
        let mut s = String::new();
        push_token(&mut s, "my auth (v2)");
        assert_eq!(s, "my_auth__v2_");
    }
}
