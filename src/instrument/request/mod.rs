//! One request's timing: which boundary the runtime thread is in, and each boundary's figures.
//!
//! Time is charged by transitions: whenever control passes from one boundary to another (a
//! middleware polls the rest of the stack, the rest returns, one hook hands over to the next),
//! the clock is read once and the time since the previous transition goes to the boundary that
//! was running. A boundary's exclusive time is the sum of its portions; no subtraction of inner
//! times is needed, and consecutive hooks share their reads.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::MatchedPath;

use crate::clock::ticks::now;

thread_local! {
    /// Ticks that stacks nested inside the boundary now running (a stack served inside a route
    /// of another's router) spent in their own polls since its last transition; its next
    /// transition leaves them out, so the outer stack does not blame itself for them.
    static NESTED: Cell<u64> = const { Cell::new(0) };
    /// How many stacks' request futures this thread is polling, one inside the other.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The ticks since `mark`, less what nested stacks took of them.
#[inline]
fn portion(now: u64, mark: u64) -> u64 {
    now.saturating_sub(mark)
        .saturating_sub(NESTED.with(|n| n.replace(0)))
}

/// Brackets one poll of a stack's request future. A stack polled inside another's poll adds
/// the ticks it took to `NESTED` for the outer one; the outermost starts and ends with none.
pub(crate) struct StackPoll {
    /// When this is a nested poll: its start, and what the outer boundary had pending.
    nested: Option<(u64, u64)>,
}

impl StackPoll {
    #[inline]
    pub(crate) fn begin() -> Self {
        let depth = DEPTH.with(|d| {
            let depth = d.get();
            d.set(depth + 1);
            depth
        });
        if depth == 0 {
            NESTED.with(|n| n.set(0));
            return Self { nested: None };
        }
        let pending = NESTED.with(|n| n.replace(0));
        Self {
            nested: Some((now(), pending)),
        }
    }
}

impl Drop for StackPoll {
    #[inline]
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        match self.nested {
            None => NESTED.with(|n| n.set(0)),
            Some((start, pending)) => {
                let took = now().saturating_sub(start);
                NESTED.with(|n| n.set(pending + took));
            }
        }
    }
}

/// "No boundary": time charged here is dropped (the stack's own glue between boundaries).
pub(crate) const NONE: usize = usize::MAX;

/// Boundaries whose slots live inline in the request's context, itself inside the request's
/// future; deeper stacks allocate their slots once per request. More inline slots would push
/// the request's future past the sizes the allocator's per-thread cache serves (see the
/// `request_future_fits_the_allocator_cache` test).
const INLINE_SLOTS: usize = 4;

/// One boundary's figures for one request, in clock ticks.
#[derive(Default)]
pub(crate) struct Slot {
    /// Time in this boundary's own code.
    pub(crate) exclusive: AtomicU64,
    /// Exclusive time of the poll in progress.
    poll: AtomicU64,
    /// The longest single poll.
    pub(crate) worst: AtomicU64,
    /// Polls at or over the blocking threshold (low half) and how many of those have been
    /// published to the stack's statistics (high half), in one word to keep the slot small.
    blocking: AtomicU64,
    /// First entry and last exit; a zero first means the boundary never ran. For a hook group,
    /// its first hook's slot keeps the group's span.
    pub(crate) first: AtomicU64,
    pub(crate) last: AtomicU64,
    /// Hooks: wall time spent waiting in their async work.
    pub(crate) waited: AtomicU64,
}

impl Slot {
    /// Whether the boundary ran in this request.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    #[inline]
    pub(crate) fn ran(&self) -> bool {
        self.first.load(Relaxed) != 0
    }

    /// Polls at or over the blocking threshold in this request.
    #[inline]
    pub(crate) fn blocking_polls(&self) -> u64 {
        self.blocking.load(Relaxed) & 0xffff_ffff
    }

    /// Whether some blocking polls are not published yet.
    #[inline]
    pub(crate) fn has_unpublished(&self) -> bool {
        let word = self.blocking.load(Relaxed);
        word & 0xffff_ffff != word >> 32
    }

    /// Blocking polls not published yet; marks them published.
    pub(crate) fn take_unpublished(&self) -> u64 {
        let word = self.blocking.load(Relaxed);
        let (crossed, published) = (word & 0xffff_ffff, word >> 32);
        self.blocking.store(crossed | (crossed << 32), Relaxed);
        crossed.saturating_sub(published)
    }
}

/// What one request carries through its stack: timing slots (when instrumentation is on), the
/// route template the app's router matched, and the method, for reports.
pub(crate) struct RequestCtx {
    /// Whether the boundaries time their polls.
    pub(crate) timed: bool,
    threshold: u64,
    /// Time of the last transition.
    mark: AtomicU64,
    /// The boundary being charged.
    current: AtomicUsize,
    len: usize,
    inline: [Slot; INLINE_SLOTS],
    spilled: Box<[Slot]>,
    /// Set once per request (a `OnceLock` costs a `Once` round each time; an uncontended lock
    /// two atomic operations).
    route: Mutex<Option<MatchedPath>>,
    /// The route an enclosing router matched before the stack ran (under `Router::layer`).
    before: Option<MatchedPath>,
    pub(crate) method: http::Method,
}

impl RequestCtx {
    /// A context for `boundaries` boundaries; untimed ones keep no slots.
    pub(crate) fn new(
        timed: bool,
        boundaries: usize,
        threshold: u64,
        method: http::Method,
        before: Option<MatchedPath>,
    ) -> Self {
        let len = if timed { boundaries } else { 0 };
        let spilled = if len > INLINE_SLOTS {
            (0..len).map(|_| Slot::default()).collect()
        } else {
            Box::default()
        };
        Self {
            timed,
            threshold,
            mark: AtomicU64::new(0),
            current: AtomicUsize::new(NONE),
            len,
            inline: Default::default(),
            spilled,
            route: Mutex::new(None),
            before,
            method,
        }
    }

    /// Records the route template the app's router matched (the first one wins).
    pub(crate) fn set_route(&self, route: MatchedPath) {
        self.route
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(route);
    }

    /// Whether the app's router reported the route it matched.
    pub(crate) fn has_route(&self) -> bool {
        self.route
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Whether a router before the stack matched a route (under `Router::layer`).
    pub(crate) fn has_route_before(&self) -> bool {
        self.before.is_some()
    }

    /// The route label of reports: the stack's own router knows best; a stack under
    /// `Router::layer` (or a route of an enclosing router) has only the route matched before it.
    /// The route template the app matched (or the one matched before the stack).
    pub(crate) fn route(&self) -> Option<MatchedPath> {
        self.route_label().0
    }

    pub(crate) fn route_label(&self) -> RouteLabel {
        let own = self
            .route
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        RouteLabel(own.or_else(|| self.before.clone()))
    }

    /// One slot per boundary: the entries (each hook its own) in order, then the app.
    pub(crate) fn slots(&self) -> &[Slot] {
        if self.len > INLINE_SLOTS {
            &self.spilled
        } else {
            &self.inline[..self.len]
        }
    }

    #[inline]
    fn slot(&self, index: usize) -> Option<&Slot> {
        self.slots().get(index)
    }

    /// A boundary's poll begins: the boundary running until now (its parent) is interrupted,
    /// not finished. Returns the parent, to hand back to [`RequestCtx::exit`].
    #[inline]
    pub(crate) fn enter(&self, index: usize) -> usize {
        let now = now();
        let slots = self.slots();
        let parent = self.current.load(Relaxed);
        let ticks = portion(now, self.mark.load(Relaxed));
        if let Some(slot) = slots.get(parent) {
            slot.exclusive
                .store(slot.exclusive.load(Relaxed) + ticks, Relaxed);
            slot.poll.store(slot.poll.load(Relaxed) + ticks, Relaxed);
        }
        if let Some(slot) = slots.get(index) {
            slot.poll.store(0, Relaxed);
            if slot.first.load(Relaxed) == 0 {
                slot.first.store(now, Relaxed);
            }
        }
        self.current.store(index, Relaxed);
        self.mark.store(now, Relaxed);
        parent
    }

    /// A boundary's poll ends and control returns to `parent`. True when the poll crossed the
    /// blocking threshold.
    #[inline]
    pub(crate) fn exit(&self, index: usize, parent: usize) -> bool {
        let now = now();
        let mut crossed = false;
        let ticks = portion(now, self.mark.load(Relaxed));
        if let Some(slot) = self.slots().get(index) {
            slot.exclusive
                .store(slot.exclusive.load(Relaxed) + ticks, Relaxed);
            let poll = slot.poll.load(Relaxed) + ticks;
            if poll > slot.worst.load(Relaxed) {
                slot.worst.store(poll, Relaxed);
            }
            slot.last.store(now, Relaxed);
            if poll >= self.threshold {
                slot.blocking
                    .store(slot.blocking.load(Relaxed) + 1, Relaxed);
                crossed = true;
            }
        }
        self.current.store(parent, Relaxed);
        self.mark.store(now, Relaxed);
        crossed
    }

    /// Control passes from the current hook (finishing one call, or one poll of its async
    /// work; or `NONE`) to `index` (a hook starting one, or `NONE`), with one clock read. A
    /// hook's call is one uninterrupted portion, so it is its own poll. Returns the hook that
    /// finished a call over the threshold, if any.
    #[inline]
    pub(crate) fn switch(&self, index: usize) -> Option<usize> {
        let now = now();
        let previous = self.current.load(Relaxed);
        let mut crossed = None;
        let ticks = portion(now, self.mark.load(Relaxed));
        if let Some(slot) = self.slot(previous) {
            slot.exclusive
                .store(slot.exclusive.load(Relaxed) + ticks, Relaxed);
            if ticks > slot.worst.load(Relaxed) {
                slot.worst.store(ticks, Relaxed);
            }
            if ticks >= self.threshold {
                slot.blocking
                    .store(slot.blocking.load(Relaxed) + 1, Relaxed);
                crossed = Some(previous);
            }
        }
        // A hook's first call marks it as having run (its group's span is kept apart).
        if let Some(slot) = self.slot(index) {
            if slot.first.load(Relaxed) == 0 {
                slot.first.store(now, Relaxed);
            }
        }
        self.current.store(index, Relaxed);
        self.mark.store(now, Relaxed);
        crossed
    }

    /// Hands the thread back to `parent` right after a [`RequestCtx::switch`] to `NONE` (which
    /// already read the clock).
    #[inline]
    pub(crate) fn resume(&self, parent: usize) {
        self.current.store(parent, Relaxed);
    }

    /// Records that hook `index` waited `ticks` of wall time in its async work.
    pub(crate) fn add_waited(&self, index: usize, ticks: u64) {
        if let Some(slot) = self.slot(index) {
            slot.waited.fetch_add(ticks, Relaxed);
        }
    }

    /// Marks the first and last time of a hook group, kept in its first hook's slot.
    #[inline]
    pub(crate) fn group_span(&self, first_hook: usize, start: u64, end: u64) {
        if let Some(slot) = self.slot(first_hook) {
            if slot.first.load(Relaxed) == 0 {
                slot.first.store(start, Relaxed);
            }
            slot.last.store(end, Relaxed);
        }
    }

    /// The mark of the last transition (the end of the poll that just finished).
    #[inline]
    pub(crate) fn mark(&self) -> u64 {
        self.mark.load(Relaxed)
    }
}

/// A request's route template for reports, or `unmatched`.
pub(crate) struct RouteLabel(Option<MatchedPath>);

impl std::ops::Deref for RouteLabel {
    type Target = str;

    fn deref(&self) -> &str {
        self.0
            .as_ref()
            .map_or(super::UNMATCHED, MatchedPath::as_str)
    }
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

#[cfg(test)]
mod tests;
