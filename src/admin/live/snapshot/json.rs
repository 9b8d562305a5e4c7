//! One stack's figures as the page's JSON: per entry, per route, the slowest requests and
//! the stores, over the window between two readings.

#[allow(clippy::wildcard_imports)]
use super::*;

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

pub(super) fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(super) fn stack_json(stack: &Arc<LiveStack>, now: &Reading, oldest: Option<&Reading>) -> Value {
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
