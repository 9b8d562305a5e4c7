//! What a stack records for the live page while it serves: per boundary its calls, exclusive
//! time, early answers, errors and panics; per route its requests, status mix and duration;
//! blocking events; the slowest request of each second with its waterfall.
//!
//! Everything here is a relaxed atomic add on the request path, except three rare cases that
//! take a lock: a route seen for the first time, an early answer or a blocking event, and a
//! request slower than every other of the current second.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use http::StatusCode;

use super::histogram::LogHistogram;
use crate::clock::ticks::{ns_to_ticks, ticks_to_duration};
use crate::instrument::request::RequestCtx;
use crate::instrument::timings::{walls_excluding_inner, Span};
use crate::instrument::BlockingStats;
use crate::Response;

mod events;

/// Distinct routes one stack keeps figures for; later ones share the row `other`. Route
/// templates come from the app's router, so this only bounds apps with very many routes.
pub(super) const MAX_ROUTES: usize = 500;
/// Distinct statuses kept per boundary's early answers; later ones are counted under 0.
const MAX_STATUSES: usize = 32;
/// Blocking events kept, newest last.
pub(super) const MAX_EVENTS: usize = 100;
/// Slow requests kept: the slowest of each of the last this many seconds that had requests.
pub(super) const MAX_SLOW: usize = 30;

/// One boundary's figures since the stack was built.
pub(super) struct BoundaryFigures {
    /// Exclusive poll time per request that reached it; its count is the boundary's calls.
    pub(super) exclusive: LogHistogram,
    /// Requests it answered itself, without the app, by status.
    pub(super) answered: Mutex<Vec<(u16, u64)>>,
    /// Server errors (5xx) it produced: its early answers for a middleware, its responses for
    /// the app.
    pub(super) errors: AtomicU64,
    /// Panics caught at its boundary.
    pub(super) panics: AtomicU64,
}

impl BoundaryFigures {
    fn new() -> Self {
        Self {
            exclusive: LogHistogram::new(),
            answered: Mutex::new(Vec::new()),
            errors: AtomicU64::new(0),
            panics: AtomicU64::new(0),
        }
    }

    fn answered(&self, status: u16) {
        let mut answered = self.answered.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(row) = answered.iter_mut().find(|(s, _)| *s == status) {
            row.1 += 1;
        } else if answered.len() < MAX_STATUSES {
            answered.push((status, 1));
        } else if let Some(row) = answered.iter_mut().find(|(s, _)| *s == 0) {
            row.1 += 1;
        } else {
            answered.push((0, 1));
        }
    }
}

/// One route template's figures.
pub(super) struct RouteFigures {
    /// Request duration (to the response head), in ticks; its count is the route's requests.
    pub(super) duration: LogHistogram,
    /// Responses by status class: 1xx to 5xx.
    pub(super) classes: [AtomicU64; 5],
}

impl RouteFigures {
    fn new() -> Self {
        Self {
            duration: LogHistogram::new(),
            classes: Default::default(),
        }
    }
}

/// A single poll that held the runtime thread, as the page lists it.
#[derive(Clone, serde::Serialize)]
pub(super) struct BlockingEvent {
    /// Increases by one per event, across the stack's life.
    pub(super) seq: u64,
    /// Unix time in milliseconds.
    pub(super) at_ms: u64,
    pub(super) entry: String,
    pub(super) method: String,
    pub(super) route: String,
    /// The longest blocking poll of the request in this entry.
    pub(super) duration_ms: f64,
    /// Blocking polls of this entry in the request.
    pub(super) polls: u64,
    pub(super) request_id: Option<String>,
}

/// One boundary's part in a slow request.
#[derive(Clone, serde::Serialize)]
pub(super) struct Step {
    pub(super) entry: String,
    /// From the request's start to the boundary's first poll.
    pub(super) start_ms: f64,
    /// Its wall time, inner boundaries excluded (what `Server-Timing` shows).
    pub(super) wall_ms: f64,
    /// Time in its own polls.
    pub(super) exclusive_ms: f64,
}

/// A slow request with its waterfall.
#[derive(Clone, serde::Serialize)]
pub(super) struct SlowRequest {
    pub(super) at_ms: u64,
    pub(super) method: String,
    pub(super) route: String,
    /// The path, with query values hidden unless the page shows them.
    pub(super) path: String,
    pub(super) status: u16,
    pub(super) duration_ms: f64,
    pub(super) request_id: Option<String>,
    /// The boundaries the request reached, in stack order.
    pub(super) steps: Vec<Step>,
}

#[derive(Default)]
struct SlowWindow {
    /// Which second (of the instrumentation clock) `candidate` belongs to.
    second: u64,
    candidate: Option<SlowRequest>,
    kept: VecDeque<SlowRequest>,
}

/// What one stack records for the page. Shared by every service built from the same stack.
pub(crate) struct LiveStack {
    /// What the stack is: its boundaries, entries, warnings, stores.
    pub(super) parts: Parts,
    /// Per boundary, as `parts.names`.
    pub(super) boundaries: Box<[BoundaryFigures]>,
    pub(super) in_flight: AtomicI64,
    pub(super) routes: RwLock<HashMap<Box<str>, Arc<RouteFigures>, foldhash::fast::FixedState>>,
    events: Mutex<VecDeque<BlockingEvent>>,
    event_seq: AtomicU64,
    /// The current second's slowest request so far, in ticks (a lock-free first look).
    slow_max: AtomicU64,
    slow_second: AtomicU64,
    slow: Mutex<SlowWindow>,
    ticks_per_second: u64,
    /// The page's own path: its requests are not recorded.
    page_path: Arc<str>,
    show_query_values: bool,
}

/// What a stack tells its recorder when it is built.
pub(crate) struct Parts {
    pub(crate) name: String,
    /// Per boundary: each entry, then `app`, then `body`.
    pub(crate) names: Box<[Box<str>]>,
    pub(crate) entries: Vec<super::EntryView>,
    pub(crate) lint: Vec<String>,
    pub(crate) timed: bool,
    pub(crate) stats: Box<[Arc<BlockingStats>]>,
    pub(crate) backends: Vec<super::BackendView>,
}

/// A request being recorded: when it started and what it asked for.
pub(crate) struct Started<'a> {
    /// When it began and ended (answered or dropped), in clock ticks.
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) uri: &'a http::Uri,
}

impl LiveStack {
    pub(crate) fn new(parts: Parts, page_path: Arc<str>, show_query_values: bool) -> Self {
        Self {
            boundaries: parts.names.iter().map(|_| BoundaryFigures::new()).collect(),
            parts,
            in_flight: AtomicI64::new(0),
            routes: RwLock::default(),
            events: Mutex::new(VecDeque::new()),
            event_seq: AtomicU64::new(0),
            slow_max: AtomicU64::new(0),
            slow_second: AtomicU64::new(0),
            slow: Mutex::default(),
            ticks_per_second: ns_to_ticks(1_000_000_000).max(1),
            page_path,
            show_query_values,
        }
    }

    /// Starts recording `req` (counted in flight until [`LiveStack::finished`] or
    /// [`LiveStack::abandoned`]), unless it is one of the page's own. The request's URI is
    /// kept for the slow-request list; boxed, so the request's future stays small.
    #[inline]
    pub(crate) fn begin<B>(&self, req: &http::Request<B>) -> Option<Box<http::Uri>> {
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(&*self.page_path) {
            if rest.is_empty() || rest.starts_with('/') {
                return None;
            }
        }
        self.in_flight.fetch_add(1, Relaxed);
        Some(Box::new(req.uri().clone()))
    }

    /// A request was answered with `res` (after the stack's own figures were taken).
    pub(crate) fn finished(
        &self,
        request: &Started<'_>,
        ctx: &RequestCtx,
        spans: &[Span],
        route: &str,
        res: &Response,
    ) {
        self.in_flight.fetch_sub(1, Relaxed);
        self.record(request, ctx, spans, route, res.status(), Some(res));
    }

    /// A request was dropped before it was answered (the client left, a timeout outside
    /// the stack): counted as nginx's 499.
    pub(crate) fn abandoned(&self, request: &Started<'_>, ctx: &RequestCtx, spans: &[Span]) {
        self.in_flight.fetch_sub(1, Relaxed);
        let closed = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
        self.record(request, ctx, spans, &ctx.route_label(), closed, None);
    }

    /// The response body's polls of one request.
    #[inline]
    pub(crate) fn body_finished(&self, exclusive: u64) {
        if let Some(body) = self.boundaries.last() {
            body.exclusive.record(exclusive);
        }
    }

    /// Counts a response of `route`: under the read lock when the route is known (no
    /// reference count touched), otherwise after adding it.
    #[inline]
    fn count_route(&self, route: &str, status: StatusCode, elapsed: u64) {
        let count = |figures: &RouteFigures| {
            figures.duration.record(elapsed);
            let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
            figures.classes[class].fetch_add(1, Relaxed);
        };
        if let Some(figures) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            count(figures);
            return;
        }
        count(&self.add_route(route));
    }

    #[cold]
    fn add_route(&self, route: &str) -> Arc<RouteFigures> {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let key = if routes.len() >= MAX_ROUTES && !routes.contains_key(route) {
            "other"
        } else {
            route
        };
        Arc::clone(
            routes
                .entry(Box::from(key))
                .or_insert_with(|| Arc::new(RouteFigures::new())),
        )
    }

    fn record(
        &self,
        request: &Started<'_>,
        ctx: &RequestCtx,
        spans: &[Span],
        route: &str,
        status: StatusCode,
        res: Option<&Response>,
    ) {
        let end = request.end;
        let elapsed = end.saturating_sub(request.start);
        self.count_route(route, status, elapsed);
        let slots = ctx.slots();
        let app = slots.len().checked_sub(1);
        let mut last_ran = None;
        let mut blocked = false;
        for (i, (slot, figures)) in slots.iter().zip(self.boundaries.iter()).enumerate() {
            if slot.ran() {
                figures.exclusive.record(slot.exclusive.load(Relaxed));
                last_ran = Some(i);
                blocked |= slot.blocking_polls() > 0;
            }
        }
        let request_id = || {
            res.and_then(|res| res.headers().get("x-request-id"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        // Who answered: the entry that says so (a timeout, a concurrency limit, a hook's early
        // answer), otherwise the app when it ran, otherwise the innermost entry that ran.
        let said = res
            .and_then(|res| res.extensions().get::<crate::AnsweredBy>())
            .and_then(|by| self.parts.names.iter().position(|n| **n == *by.name()));
        if let (Some(answerer), Some(res)) = (said.or(last_ran), res) {
            let figures = &self.boundaries[answerer];
            if Some(answerer) != app {
                figures.answered(status.as_u16());
            }
            if status.is_server_error() {
                figures.errors.fetch_add(1, Relaxed);
                // A caught panic answers 500 (looked for only then: a lookup in the
                // extensions is not free).
                if let Some(panicked) = res.extensions().get::<crate::Panicked>() {
                    if let Some(i) = self
                        .parts
                        .names
                        .iter()
                        .position(|n| **n == *panicked.entry())
                    {
                        self.boundaries[i].panics.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        if blocked {
            self.blocking(ctx, route, request_id());
        }
        if ctx.timed {
            self.maybe_slow(request, ctx, spans, route, status, elapsed, end, request_id);
        }
    }
}

/// `path?key=&other=`: the keys of the query, not its values, unless `values`.
pub(super) fn shown_path(uri: &http::Uri, values: bool) -> String {
    let path = uri.path();
    match uri.query() {
        None => path.to_owned(),
        Some(query) if values => format!("{path}?{query}"),
        Some(query) => {
            // `key=value` shows its key; a bare part (`?eyJhbGci...`) may itself be a secret.
            let keys: Vec<String> = query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map_or_else(|| "*".to_owned(), |(key, _)| format!("{key}="))
                })
                .collect();
            format!("{path}?{}", keys.join("&"))
        }
    }
}

fn ms(ticks: u64) -> f64 {
    ticks_to_duration(ticks).as_secs_f64() * 1000.0
}

pub(super) use crate::clock::wall_ms as unix_ms;

#[cfg(test)]
mod tests {
    use super::shown_path;

    #[test]
    fn query_values_are_hidden() {
        let uri: http::Uri = "/items/3?q=secret&page=2&flag".parse().unwrap();
        assert_eq!(shown_path(&uri, false), "/items/3?q=&page=&*");
        assert_eq!(shown_path(&uri, true), "/items/3?q=secret&page=2&flag");
        let plain: http::Uri = "/".parse().unwrap();
        assert_eq!(shown_path(&plain, false), "/");
    }
}
