//! Snapshots: the figures of every stack on the page as one JSON document, made at most about
//! once a second however many viewers and API calls ask, with rates and percentiles over the
//! last ten seconds or so (the readings kept between snapshots).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::histogram::{minus, quantile};
use super::record::{unix_ms, LiveStack};
use super::LivePage;
use crate::instrument::clock::ticks_to_duration;

/// A snapshot younger than this is served again rather than made anew.
const FRESH: Duration = Duration::from_millis(900);
/// Readings kept: the window of rates and percentiles spans up to this many snapshots.
const READINGS: usize = 11;
/// A backend is probed again once its last probe is this old (only while someone watches).
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// A probe that takes longer is a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Routes listed in a snapshot, most requested first.
const ROUTES_SHOWN: usize = 50;
/// Slow requests listed in a snapshot (the API lists all that are kept).
const SLOW_SHOWN: usize = 10;

#[derive(Default)]
pub(crate) struct Snapshots {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seq: u64,
    latest: Option<(Instant, u64, Arc<str>)>,
    readings: VecDeque<Reading>,
}

/// Cumulative counts of every stack at one moment.
struct Reading {
    at: Instant,
    /// By the recorder's address.
    stacks: HashMap<usize, StackReading>,
}

struct StackReading {
    boundaries: Vec<Vec<u64>>,
    routes: HashMap<String, Vec<u64>>,
}

/// The latest probe of a backend.
#[derive(Default)]
pub(crate) struct ProbeState {
    started: Option<Instant>,
    running: bool,
    result: Option<ProbeResult>,
}

#[derive(Clone, Serialize)]
struct ProbeResult {
    up: bool,
    latency_ms: f64,
    error: Option<String>,
    at_ms: u64,
}

impl LivePage {
    /// The latest snapshot and its number, made now if the last one is stale (or `fresh` is
    /// asked, as the JSON API does: a script sees the requests it just made). The readings
    /// that rates are computed from are kept about a second apart either way.
    pub(crate) fn snapshot(&self, fresh: bool) -> (u64, Arc<str>) {
        let mut state = self
            .inner
            .snapshots
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, seq, json)) = &state.latest {
            if !fresh && at.elapsed() < FRESH {
                return (*seq, Arc::clone(json));
            }
        }
        let stacks = self.stacks();
        let now = Instant::now();
        // After a quiet spell the window starts again rather than spanning it.
        let oldest_kept = FRESH * READINGS as u32 * 2;
        state
            .readings
            .retain(|r| now.duration_since(r.at) <= oldest_kept);
        let reading = Reading {
            at: now,
            stacks: stacks
                .iter()
                .map(|s| (Arc::as_ptr(s) as usize, read(s)))
                .collect(),
        };
        state.seq += 1;
        let seq = state.seq;
        let oldest = state.readings.front();
        let doc = json!({
            "seq": seq,
            "at_ms": unix_ms(),
            "window_s": oldest.map(|o| now.duration_since(o.at).as_secs_f64()),
            "stacks": stacks
                .iter()
                .map(|s| stack_json(s, &reading, oldest))
                .collect::<Vec<_>>(),
        });
        if state
            .readings
            .back()
            .is_none_or(|last| now.duration_since(last.at) >= FRESH)
        {
            if state.readings.len() == READINGS {
                state.readings.pop_front();
            }
            state.readings.push_back(reading);
        }
        let json: Arc<str> = Arc::from(doc.to_string());
        // A script's snapshot is not the viewers' next one: they would see it a second late.
        if !fresh {
            state.latest = Some((now, seq, Arc::clone(&json)));
        }
        drop(state);
        for stack in &stacks {
            for index in 0..stack.parts.backends.len() {
                probe_if_due(stack, index);
            }
        }
        (seq, json)
    }

    /// The number of the latest snapshot made.
    pub(crate) fn latest_seq(&self) -> u64 {
        self.inner
            .snapshots
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seq
    }

    /// The slow requests and blocking events every stack keeps.
    pub(crate) fn requests(&self) -> Value {
        json!({
            "stacks": self.stacks().iter().map(|s| json!({
                "name": s.parts.name,
                "slowest": s.slowest(),
                "blocking_events": s.events(),
            })).collect::<Vec<_>>(),
        })
    }
}

fn read(stack: &LiveStack) -> StackReading {
    StackReading {
        boundaries: stack
            .boundaries
            .iter()
            .map(|b| b.exclusive.counts())
            .collect(),
        routes: stack
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(route, figures)| (route.to_string(), figures.duration.counts()))
            .collect(),
    }
}

/// Rates and percentiles of one histogram: lifetime `now`, window `now - before` over
/// `seconds` (the lifetime when there is no earlier reading).
struct Window<'a> {
    now: &'a [u64],
    window: Vec<u64>,
    seconds: Option<f64>,
}

impl Window<'_> {
    fn total(&self) -> u64 {
        self.now.iter().sum()
    }

    /// Per second over the window; none over less than a second or so (two snapshots made
    /// close together would give wild figures).
    fn rate(&self) -> Option<f64> {
        let seconds = self.seconds?;
        (seconds >= FRESH.as_secs_f64()).then(|| self.window.iter().sum::<u64>() as f64 / seconds)
    }

    /// In microseconds: over the window when it has samples, otherwise over the lifetime.
    fn quantile_us(&self, q: f64) -> Option<f64> {
        let counts = if self.window.iter().any(|&c| c > 0) {
            &self.window
        } else {
            self.now
        };
        quantile(counts, q).map(|ticks| round(us(ticks)))
    }
}

fn window<'a>(now: &'a [u64], before: Option<&[u64]>, seconds: Option<f64>) -> Window<'a> {
    Window {
        now,
        window: before.map_or_else(|| now.to_vec(), |b| minus(now, b)),
        seconds,
    }
}

fn us(ticks: f64) -> f64 {
    // Ticks to microseconds through the clock's own conversion (ticks are not nanoseconds on
    // every machine).
    let scale = ticks_to_duration(1_000_000_000).as_secs_f64() * 1e6 / 1e9;
    ticks * scale
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn stack_json(stack: &Arc<LiveStack>, now: &Reading, oldest: Option<&Reading>) -> Value {
    let key = Arc::as_ptr(stack) as usize;
    let Some(current) = now.stacks.get(&key) else {
        return Value::Null;
    };
    let before = oldest.and_then(|o| o.stacks.get(&key));
    let seconds = oldest.map(|o| now.at.duration_since(o.at).as_secs_f64());
    // A stack that was not in the oldest reading is new: its window is its lifetime.
    let seconds = before.and(seconds);

    let entries: Vec<Value> = stack
        .parts
        .entries
        .iter()
        .enumerate()
        .map(|(i, view)| {
            let figures = &stack.boundaries[i];
            let w = window(
                &current.boundaries[i],
                before.map(|b| b.boundaries[i].as_slice()),
                seconds,
            );
            let mut answered = figures
                .answered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            answered.sort_by_key(|row| std::cmp::Reverse(row.1));
            let (blocking, worst) = stack.parts.stats[i].totals();
            json!({
                "index": view.index,
                "name": view.name,
                "kind": view.kind,
                "battery": view.battery,
                "settings": view.settings,
                "calls": w.total(),
                "calls_per_s": w.rate().map(round),
                "p50_us": w.quantile_us(0.5),
                "p95_us": w.quantile_us(0.95),
                "p99_us": w.quantile_us(0.99),
                "answered": answered
                    .iter()
                    .map(|(status, count)| json!({"status": status, "count": count}))
                    .collect::<Vec<_>>(),
                "errors": figures.errors.load(Relaxed),
                "panics": figures.panics.load(Relaxed),
                "blocking": blocking,
                "worst_blocking_ms": (blocking > 0).then(|| round(worst.as_secs_f64() * 1000.0)),
            })
        })
        .collect();

    let mut routes: Vec<RouteRow> = stack
        .routes
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|(route, figures)| {
            let counts = current.routes.get(&**route)?;
            let w = window(
                counts,
                before
                    .and_then(|b| b.routes.get(&**route))
                    .map(Vec::as_slice),
                seconds,
            );
            Some(RouteRow {
                route: route.to_string(),
                requests: w.total(),
                rps: w.rate(),
                classes: figures.classes.each_ref().map(|c| c.load(Relaxed)),
                p50_ms: w.quantile_us(0.5).map(|us| round(us / 1000.0)),
                p99_ms: w.quantile_us(0.99).map(|us| round(us / 1000.0)),
            })
        })
        .collect();
    routes.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.route.cmp(&b.route))
    });
    let requests: u64 = routes.iter().map(|r| r.requests).sum();
    let rps: Option<f64> = routes.iter().map(|r| r.rps).sum::<Option<f64>>().map(round);
    let mut status = [0u64; 5];
    for row in &routes {
        for (sum, class) in status.iter_mut().zip(row.classes) {
            *sum += class;
        }
    }
    let mut slowest = stack.slowest();
    slowest.truncate(SLOW_SHOWN);
    json!({
        "name": stack.parts.name,
        "instrumented": stack.parts.timed,
        "in_flight": stack.in_flight.load(Relaxed).max(0),
        "requests": requests,
        "rps": rps,
        "status": status_json(status),
        "entries": entries,
        "lint": stack.parts.lint,
        "routes": routes
            .iter()
            .take(ROUTES_SHOWN)
            .map(|r| json!({
                "route": r.route,
                "requests": r.requests,
                "rps": r.rps.map(round),
                "status": status_json(r.classes),
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
            }))
            .collect::<Vec<_>>(),
        "blocking_events": stack.events(),
        "slowest": slowest,
        "backends": stack.parts.backends.iter().map(|b| {
            let probe = b.probe.lock().unwrap_or_else(PoisonError::into_inner);
            json!({
                "kind": b.backend.kind,
                "url": b.backend.url,
                "used_by": b.entry,
                "up": probe.result.as_ref().map(|r| r.up),
                "latency_ms": probe.result.as_ref().map(|r| r.latency_ms),
                "error": probe.result.as_ref().and_then(|r| r.error.clone()),
                "checked_at_ms": probe.result.as_ref().map(|r| r.at_ms),
                "counters": (b.backend.counters)()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Value::from(v)))
                    .collect::<serde_json::Map<_, _>>(),
            })
        }).collect::<Vec<_>>(),
    })
}

/// One route's figures in a snapshot.
struct RouteRow {
    route: String,
    requests: u64,
    rps: Option<f64>,
    /// Responses by status class, 1xx to 5xx.
    classes: [u64; 5],
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn status_json(classes: [u64; 5]) -> Value {
    json!({
        "1xx": classes[0], "2xx": classes[1], "3xx": classes[2], "4xx": classes[3], "5xx": classes[4],
    })
}

/// Starts a probe of the stack's backend `index` in the background when its last one is old
/// enough.
fn probe_if_due(stack: &Arc<LiveStack>, index: usize) {
    let mut state = stack.parts.backends[index]
        .probe
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if state.running || state.started.is_some_and(|at| at.elapsed() < PROBE_EVERY) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    state.running = true;
    state.started = Some(Instant::now());
    let stack = Arc::clone(stack);
    runtime.spawn(async move {
        let Some(view) = stack.parts.backends.get(index) else {
            return;
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(PROBE_TIMEOUT, (view.backend.probe)()).await;
        let latency_ms = round(started.elapsed().as_secs_f64() * 1000.0);
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err),
            Err(_) => Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
        };
        let mut state = view.probe.lock().unwrap_or_else(PoisonError::into_inner);
        state.running = false;
        state.result = Some(ProbeResult {
            up: error.is_none(),
            latency_ms,
            error,
            at_ms: unix_ms(),
        });
    });
}
