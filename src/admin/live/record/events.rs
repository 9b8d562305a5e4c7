//! What the page keeps of single requests: blocking events as they happen, and the slowest
//! request of each second with its waterfall.

#[allow(clippy::wildcard_imports)]
use super::*;

impl LiveStack {
    #[cold]
    pub(super) fn blocking(&self, ctx: &RequestCtx, route: &str, request_id: Option<String>) {
        let at_ms = unix_ms();
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, slot) in ctx.slots().iter().enumerate() {
            let polls = slot.blocking_polls();
            if polls == 0 {
                continue;
            }
            if events.len() == MAX_EVENTS {
                events.pop_front();
            }
            events.push_back(BlockingEvent {
                seq: self.event_seq.fetch_add(1, Relaxed) + 1,
                at_ms,
                entry: self.parts.names[i].to_string(),
                method: ctx.method.to_string(),
                route: route.to_owned(),
                duration_ms: ms(slot.worst.load(Relaxed)),
                polls,
                request_id: request_id.clone(),
            });
        }
    }

    /// Keeps the request if it is the slowest of its second so far.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn maybe_slow(
        &self,
        request: &Started<'_>,
        ctx: &RequestCtx,
        spans: &[Span],
        route: &str,
        status: StatusCode,
        elapsed: u64,
        end: u64,
        request_id: impl FnOnce() -> Option<String>,
    ) {
        let second = end / self.ticks_per_second;
        if second == self.slow_second.load(Relaxed) && elapsed <= self.slow_max.load(Relaxed) {
            return;
        }
        let mut window = self.slow.lock().unwrap_or_else(PoisonError::into_inner);
        if window.second != second {
            if let Some(previous) = window.candidate.take() {
                if window.kept.len() == MAX_SLOW {
                    window.kept.pop_front();
                }
                window.kept.push_back(previous);
            }
            window.second = second;
            self.slow_second.store(second, Relaxed);
            self.slow_max.store(0, Relaxed);
        }
        if elapsed <= self.slow_max.load(Relaxed) {
            return;
        }
        self.slow_max.store(elapsed, Relaxed);
        let slots = ctx.slots();
        let steps = slots
            .iter()
            .zip(walls_excluding_inner(slots, spans))
            .enumerate()
            .filter(|(_, (slot, _))| slot.ran())
            .map(|(i, (slot, wall))| Step {
                entry: self.parts.names[i].to_string(),
                start_ms: ms(slot.first.load(Relaxed).saturating_sub(request.start)),
                wall_ms: wall.as_secs_f64() * 1000.0,
                exclusive_ms: ms(slot.exclusive.load(Relaxed)),
            })
            .collect();
        window.candidate = Some(SlowRequest {
            at_ms: unix_ms(),
            method: ctx.method.to_string(),
            route: route.to_owned(),
            path: shown_path(request.uri, self.show_query_values),
            status: status.as_u16(),
            duration_ms: ms(elapsed),
            request_id: request_id(),
            steps,
        });
    }

    /// The blocking events kept, oldest first.
    pub(in crate::admin::live) fn events(&self) -> Vec<BlockingEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The slow requests kept, slowest first.
    pub(in crate::admin::live) fn slowest(&self) -> Vec<SlowRequest> {
        let window = self.slow.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<SlowRequest> = window
            .kept
            .iter()
            .chain(window.candidate.as_ref())
            .cloned()
            .collect();
        drop(window);
        all.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
        all
    }
}
