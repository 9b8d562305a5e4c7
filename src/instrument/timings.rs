//! Per-request timing for people: [`RequestTimings`] and the `Server-Timing` header.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::request::Slot;
use crate::clock::ticks::ticks_to_duration;

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
    /// Wall time it accounts for, inner layers excluded: for a middleware, from its first poll
    /// to its last minus the inner layers' span; for a hook, its calls plus the time it waited
    /// on async work. This is what `Server-Timing` shows.
    pub wall_excluding_inner: Duration,
}

/// Per-boundary timing of one request, attached to the response's extensions when
/// [`Stack::record_timings`](crate::Stack::record_timings) is on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// How a boundary's wall time is read from its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// A middleware, tower layer or the app: its own first/last, minus the inner boundary's.
    Around,
    /// A hook: its calls plus its waits. `group_first` is the slot of its group's first hook,
    /// which keeps the group's span for the boundary outside it.
    Hook { group_first: usize },
}

fn span_of(slots: &[Slot], spans: &[Span], i: usize) -> u64 {
    let at = match spans.get(i) {
        Some(Span::Hook { group_first }) => *group_first,
        _ => i,
    };
    slots.get(at).map_or(0, |s| {
        s.last
            .load(Relaxed)
            .saturating_sub(s.first.load(Relaxed).min(s.last.load(Relaxed)))
    })
}

/// Each boundary's wall time, inner layers excluded (see [`BoundaryTiming`]).
pub(crate) fn walls_excluding_inner<'a>(
    slots: &'a [Slot],
    spans: &'a [Span],
) -> impl Iterator<Item = Duration> + 'a {
    slots.iter().enumerate().map(move |(i, slot)| {
        let ticks = match spans.get(i) {
            Some(Span::Hook { .. }) => slot.exclusive.load(Relaxed) + slot.waited.load(Relaxed),
            _ => {
                // The boundary inside an around boundary is the next one that is not a later
                // hook of the same group.
                span_of(slots, spans, i).saturating_sub(span_of(slots, spans, i + 1))
            }
        };
        ticks_to_duration(ticks)
    })
}

/// A `Server-Timing` header value: `name;dur=12.3, ..., app;dur=100.4` (milliseconds).
pub(crate) fn server_timing<'a>(
    names: impl Iterator<Item = &'a str>,
    slots: &[Slot],
    spans: &[Span],
) -> String {
    let mut out = String::new();
    for (name, dur) in names.zip(walls_excluding_inner(slots, spans)) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        push_token(&mut out, name);
        let _ = write!(out, ";dur={:.1}", dur.as_secs_f64() * 1000.0);
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

/// The figures of a finished request, for people.
pub(crate) fn boundary_timings<'a>(
    names: impl Iterator<Item = &'a str>,
    slots: &[Slot],
    spans: &[Span],
) -> RequestTimings {
    RequestTimings {
        boundaries: names
            .zip(slots)
            .zip(walls_excluding_inner(slots, spans))
            .map(|((name, slot), wall)| BoundaryTiming {
                name: name.to_owned(),
                exclusive: ticks_to_duration(slot.exclusive.load(Relaxed)),
                worst_poll: ticks_to_duration(slot.worst.load(Relaxed)),
                wall_excluding_inner: wall,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_sanitised() {
        let mut s = String::new();
        push_token(&mut s, "my auth (v2)");
        assert_eq!(s, "my_auth__v2_");
    }
}
