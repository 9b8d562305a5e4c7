//! What a built stack does with its requests' figures: blocking events into its statistics
//! (and the log), exclusive times into its histograms, `Server-Timing` and [`RequestTimings`]
//! onto responses.
//!
//! [`RequestTimings`]: super::RequestTimings

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use http::HeaderValue;

use super::blocking::BlockingStats;
use super::request::RequestCtx;
use super::timings::{self, Span};
use crate::clock::ticks::ticks_to_duration;
use crate::Response;

/// A built stack's boundaries (each entry, each hook, then `app` and `body`) and what is done
/// with their figures.
pub(crate) struct StackReport {
    /// Per boundary: the entries in order (a hook group contributes one per hook), `app`,
    /// `body`.
    pub(crate) names: Box<[Box<str>]>,
    /// Per boundary timed in a request's context (all but `body`).
    pub(crate) spans: Box<[Span]>,
    pub(crate) stats: Box<[Arc<BlockingStats>]>,
    pub(crate) timed: bool,
    pub(crate) threshold: u64,
    pub(crate) server_timing: bool,
    pub(crate) record_timings: bool,
    /// Whether the app is a router that reports the route it matched; when it is not, the
    /// route matched before the stack (under `Router::layer`) is the request's route.
    pub(crate) app_reports_route: bool,
    /// Debug mode: a panic's message and location go into its 500's body.
    pub(crate) debug: bool,
    /// The stack's exception handlers, if it has any.
    pub(crate) handlers: Option<crate::stack::handlers::Handlers>,
    #[cfg(feature = "prometheus")]
    pub(crate) metrics: Option<StackMetrics>,
    /// What the live stack page records, when the stack is on one.
    pub(crate) live: Option<Arc<crate::admin::live::LiveStack>>,
}

/// A stack's handles into a [`Metrics`](crate::metrics::Metrics) registry.
#[cfg(feature = "prometheus")]
pub(crate) struct StackMetrics {
    /// Per boundary, as [`StackReport::names`].
    pub(crate) poll: Box<[Arc<crate::metrics::Histogram>]>,
    pub(crate) blocking: Box<[metrics::Counter]>,
    pub(crate) requests: crate::metrics::RequestMetrics,
    /// Keeps the stack's name claimed in the registry while this service lives.
    pub(crate) _identity: Arc<dyn Send + Sync>,
}

static SERVER_TIMING: http::HeaderName = http::HeaderName::from_static("server-timing");

impl StackReport {
    /// How many boundaries a request's context times: everything but the body.
    pub(crate) fn ctx_boundaries(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn body_index(&self) -> usize {
        self.names.len() - 1
    }

    /// A poll of boundary `slot` crossed the threshold: published at once when the route is
    /// known, otherwise when the request finishes or is dropped.
    #[cold]
    pub(crate) fn crossed(&self, ctx: &RequestCtx, slot: usize) {
        if ctx.has_route() || (!self.app_reports_route && ctx.has_route_before()) {
            self.publish(ctx, slot);
        }
    }

    /// Publishes the blocking polls of `slot` not published yet.
    #[inline]
    fn publish(&self, ctx: &RequestCtx, slot: usize) {
        if ctx.slots().get(slot).is_some_and(|s| s.has_unpublished()) {
            self.publish_pending(ctx, slot);
        }
    }

    #[cold]
    fn publish_pending(&self, ctx: &RequestCtx, slot: usize) {
        let Some(figures) = ctx.slots().get(slot) else {
            return;
        };
        let pending = figures.take_unpublished();
        if pending == 0 {
            return;
        }
        let worst = ticks_to_duration(figures.worst.load(Relaxed));
        self.record_blocking(
            slot,
            pending,
            worst,
            ctx.method.as_str(),
            &ctx.route_label(),
        );
    }

    pub(crate) fn record_blocking(
        &self,
        slot: usize,
        events: u64,
        worst: std::time::Duration,
        method: &str,
        route: &str,
    ) {
        self.stats[slot].record(&self.names[slot], events, worst, method, route);
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = &self.metrics {
            metrics.blocking[slot].increment(events);
        }
    }

    /// A request was dropped before it finished: its blocking events still count.
    pub(crate) fn abandoned(&self, ctx: &RequestCtx) {
        for slot in 0..ctx.slots().len() {
            self.publish(ctx, slot);
        }
    }

    /// A request finished with `res`.
    pub(crate) fn finished(&self, ctx: &RequestCtx, res: &mut Response) {
        let slots = ctx.slots();
        for slot in 0..slots.len() {
            self.publish(ctx, slot);
        }
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = &self.metrics {
            // Boundaries a request never reached (after one that answered early) have no
            // sample: a zero would pull their percentiles down.
            for (histogram, figures) in metrics.poll.iter().zip(slots) {
                if figures.ran() {
                    histogram.record_ticks(figures.exclusive.load(Relaxed));
                }
            }
        }
        let names = || self.names.iter().map(|n| &**n);
        if self.record_timings {
            res.extensions_mut()
                .insert(timings::boundary_timings(names(), slots, &self.spans));
        }
        if self.server_timing {
            let value = timings::server_timing(names(), slots, &self.spans);
            if let Ok(value) = HeaderValue::try_from(value) {
                res.headers_mut().append(SERVER_TIMING.clone(), value);
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let mut line = String::new();
            for (name, figures) in names().zip(slots) {
                let us = ticks_to_duration(figures.exclusive.load(Relaxed)).as_nanos() / 1000;
                let _ = write!(
                    line,
                    "{}{name}={us}us",
                    if line.is_empty() { "" } else { " " }
                );
            }
            tracing::debug!(exclusive = %line, "request timings");
        }
    }

    /// The response body's polls of one request: `exclusive` ticks in all; `live` when the
    /// live page records the request.
    pub(crate) fn body_finished(&self, exclusive: u64, live: bool) {
        if let (Some(page), true) = (&self.live, live) {
            page.body_finished(exclusive);
        }
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = &self.metrics {
            metrics.poll[self.body_index()].record_ticks(exclusive);
        }
    }
}
