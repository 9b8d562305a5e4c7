//! Exclusive poll time per middleware, the blocking detector, and Server-Timing.
//!
//! Every boundary of a stack (each middleware, each hook, the app, and the response body) is
//! timed. Whenever control passes from one boundary to another — a middleware polls the rest of
//! the stack, the rest returns, one hook hands over to the next — a TSC-based clock is read
//! once and the time since the previous transition is charged to the boundary that was
//! running: its *exclusive* poll time, the time the runtime thread spent in its own code.
//! A single exclusive poll at or over the stack's blocking threshold is a blocking event: the
//! middleware held the runtime thread, and every other task on it waited.
//!
//! A blocking event is published (logged, counted, put in the [`BlockingReport`]) as soon as
//! the poll ends when the request's route is already known, and otherwise when the request
//! finishes or is dropped, so requests cut short by a disconnect or a timeout are reported too.
//!
//! Reading the clock costs a few nanoseconds (`quanta` reads the CPU's invariant TSC where it
//! has one), so instrumentation stays on in production; [`Stack::instrument`] turns it off.
//!
//! [`Stack::instrument`]: crate::Stack::instrument

mod blocking;
pub(crate) mod body;
pub(crate) mod report;
pub(crate) mod request;
pub(crate) mod timings;

use std::time::Duration;

pub(crate) use blocking::BlockingStats;
pub use blocking::{BlockingEntry, BlockingReport};
pub use timings::{BoundaryTiming, RequestTimings};

/// The default blocking threshold: 10 ms.
///
/// Tokio's guidance is that a task should spend no more than 10 to 100 microseconds between
/// `.await`s. A threshold at that scale would flag ordinary noise on a shared machine (a page
/// fault, the thread being descheduled), so the default sits at 10 ms: a hundred times tokio's
/// upper bound, far above noise, and still well below what a user notices. A synchronous file
/// read, a `std::thread::sleep`, a blocking database driver or a heavy computation all cross it.
pub const DEFAULT_BLOCKING_THRESHOLD: Duration = Duration::from_millis(10);

/// The route label of requests that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";
