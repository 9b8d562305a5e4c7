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
use crate::clock::ticks::ticks_to_duration;

mod json;

use self::json::{round, stack_json};

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
