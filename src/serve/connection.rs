//! One connection: its watchdog (header-read and keep-alive idle timeouts), the socket that
//! reports reads to it, and the response bodies it waits for.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

/// Requests being answered across all connections of one server.
pub(crate) type InFlight = Arc<AtomicUsize>;

/// What one connection's watchdog looks at.
pub(crate) struct ConnActivity {
    /// Requests whose response has not finished (or been dropped) yet.
    in_flight: AtomicUsize,
    /// The server's count of the same.
    server_in_flight: InFlight,
    /// Bumped when a request head arrives and when a response finishes.
    events: AtomicU64,
    /// Bumped by every read that brings bytes from the client.
    pub(super) reads: AtomicU64,
    /// Set by the first HTTP/2 request: frames that are not requests (pings, settings) then
    /// keep nothing alive.
    pub(super) http2: AtomicBool,
    /// `reads` when the last request began or ended: more since then means a head is arriving.
    reads_at_event: AtomicU64,
    /// When the connection last had nothing in flight (on [`idle_order`]).
    idle_since: AtomicU64,
    /// Asked to give its slot to a new client (see [`Connections::evict_longest_idle`]).
    evicting: AtomicBool,
    /// Asked to finish what it has in flight and close: the server drains.
    draining: AtomicBool,
    /// Wakes the connection's task when either is raised. One waker polled once per wake,
    /// where a drain channel and an eviction `Notify` cost a lock each on every poll of the
    /// connection (two or more per request).
    signal: AtomicWaker,
    /// Its place among `max_connections`, held as long as its socket lives.
    pub(crate) slot: super::slot::Slot,
}

/// What the server asked of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// The server drains.
    Drain,
    /// Its slot goes to a new client (it was idle the longest).
    Evict,
}

/// Why a connection's watchdog fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// A request head began to arrive and did not arrive whole in time (slowloris): cut.
    Head,
    /// Nothing in flight and no new request for the idle timeout: closed gracefully.
    Idle,
}

/// A number that grows with every call: the order in which connections became idle is all
/// eviction needs, and a counter gives it without reading a clock on every request.
fn idle_order() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Relaxed)
}

impl ConnActivity {
    pub(crate) fn new(
        server_in_flight: &InFlight,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            slot: super::slot::Slot::new(permit),
            in_flight: AtomicUsize::new(0),
            server_in_flight: Arc::clone(server_in_flight),
            events: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            reads_at_event: AtomicU64::new(0),
            idle_since: AtomicU64::new(idle_order()),
            evicting: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            signal: AtomicWaker::new(),
        }
    }

    /// Whether a request of this connection is being answered.
    pub(crate) fn is_busy(&self) -> bool {
        self.in_flight.load(Relaxed) > 0
    }

    pub(crate) fn is_http2(&self) -> bool {
        self.http2.load(Relaxed)
    }

    /// What the server asked of this connection, once it asks: to drain, or to give its slot
    /// to a new client.
    pub(crate) fn poll_asked(&self, cx: &mut Context<'_>) -> Poll<Asked> {
        if let Some(asked) = self.asked() {
            return Poll::Ready(asked);
        }
        self.signal.register(cx.waker());
        // Raised between the first look and the registration: seen now.
        self.asked().map_or(Poll::Pending, Poll::Ready)
    }

    fn asked(&self) -> Option<Asked> {
        if self.draining.load(Acquire) {
            Some(Asked::Drain)
        } else if self.evicting.load(Acquire) {
            Some(Asked::Evict)
        } else {
            None
        }
    }

    /// The server drains: finish what is in flight and close.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Release);
        self.signal.wake();
    }

    /// The time it has been idle since, if it is idle: no request in flight and, on HTTP/1, no
    /// request head arriving (an HTTP/2 connection's pings and settings do not count).
    fn idle_since(&self) -> Option<u64> {
        let idle = self.in_flight.load(Relaxed) == 0
            && !self.evicting.load(Relaxed)
            && (self.http2.load(Relaxed)
                || self.reads.load(Relaxed) == self.reads_at_event.load(Relaxed));
        idle.then(|| self.idle_since.load(Relaxed))
    }

    /// Resolves once the connection has gone `idle_timeout` without a request while none of
    /// its requests was being answered ([`Stall::Idle`]; bytes that begin a request head count
    /// as activity on HTTP/1, frames that are not requests do not on HTTP/2), or
    /// `header_timeout` since a request head began to arrive without it arriving whole
    /// ([`Stall::Head`]). A zero timeout is off. Checked every half of the shorter timeout, so
    /// a connection is closed between one and one and a half timeouts after the moment that
    /// started its clock.
    pub(crate) async fn stalled(&self, header_timeout: Duration, idle_timeout: Duration) -> Stall {
        let shortest = [header_timeout, idle_timeout]
            .into_iter()
            .filter(|t| !t.is_zero())
            .min();
        let Some(shortest) = shortest else {
            return std::future::pending().await;
        };
        let period = (shortest / 2).max(Duration::from_millis(1));
        // From the connection's start: bytes it sent before the first check began a head.
        let mut seen = (0, 0);
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            let events = self.events.load(Relaxed);
            if self.in_flight.load(Relaxed) > 0 || events != seen.0 {
                seen = (events, self.reads.load(Relaxed));
                since = tokio::time::Instant::now();
                continue;
            }
            // Bytes since the last request or response: a head is on its way (HTTP/1 only).
            let heading = !self.http2.load(Relaxed) && self.reads.load(Relaxed) != seen.1;
            let (limit, stall) = if heading {
                (header_timeout, Stall::Head)
            } else {
                (idle_timeout, Stall::Idle)
            };
            if !limit.is_zero() && since.elapsed() >= limit {
                return stall;
            }
        }
    }
}

/// The open connections of one server, so that when every slot is taken the longest-idle one
/// can give its slot to a new client (as nginx reuses idle keep-alive connections).
#[derive(Default)]
pub(crate) struct Connections {
    open: std::sync::Mutex<std::collections::HashMap<u64, Arc<ConnActivity>>>,
    next: AtomicU64,
}

/// A connection's place in [`Connections`], left when dropped.
pub(crate) struct Registered<'a> {
    connections: &'a Connections,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.connections.open.lock() {
            open.remove(&self.id);
        }
    }
}

impl Connections {
    pub(crate) fn register(&self, activity: &Arc<ConnActivity>) -> Registered<'_> {
        let id = self.next.fetch_add(1, Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, Arc::clone(activity));
        }
        Registered {
            connections: self,
            id,
        }
    }

    /// Asks every open connection to drain.
    pub(crate) fn drain_all(&self) {
        if let Ok(open) = self.open.lock() {
            for activity in open.values() {
                activity.drain();
            }
        }
    }

    /// Asks the connection idle the longest (nothing in flight, no head arriving) to close;
    /// whether there was one. A scan of the open connections, made only when all slots are
    /// taken and a new client waits.
    pub(crate) fn evict_longest_idle(&self) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        let longest = open
            .values()
            .filter_map(|a| a.idle_since().map(|since| (since, a)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, activity)) => {
                activity.evicting.store(true, Release);
                activity.signal.wake();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in flight on its connection until its response body is done or dropped.
pub(crate) struct Answering(pub(super) Arc<ConnActivity>);

impl Answering {
    pub(super) fn start(activity: &Arc<ConnActivity>) -> Self {
        activity.in_flight.fetch_add(1, Relaxed);
        activity.server_in_flight.fetch_add(1, Relaxed);
        activity.events.fetch_add(1, Relaxed);
        activity
            .reads_at_event
            .store(activity.reads.load(Relaxed), Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .reads_at_event
            .store(activity.reads.load(Relaxed), Relaxed);
        if activity.in_flight.fetch_sub(1, Relaxed) == 1 {
            activity.idle_since.store(idle_order(), Relaxed);
        }
        activity.server_in_flight.fetch_sub(1, Relaxed);
        activity.events.fetch_add(1, Relaxed);
    }
}
