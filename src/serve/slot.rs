//! A connection's place among `max_connections`: held by the connection's socket, so a socket
//! handed over by an upgrade (a WebSocket) keeps it for as long as it lives; given up early by
//! an idle HTTP/2 connection once its GOAWAY is sent; cut at the drain deadline.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Context;

use futures_util::task::AtomicWaker;
use tokio::sync::OwnedSemaphorePermit;

use super::connection::ConnActivity;

/// One connection's slot.
pub(crate) struct Slot {
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Its socket was handed to an upgrade (101 answered): the connection's task is over, and
    /// the socket is watched for [`cut`](Self::cut).
    upgraded: AtomicBool,
    cut: AtomicBool,
    /// The task reading or writing the upgraded socket, woken by a cut.
    waker: AtomicWaker,
}

impl Slot {
    pub(crate) fn new(permit: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            permit: Mutex::new(permit),
            upgraded: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// Gives the slot back now (the connection may take a moment longer to close).
    pub(crate) fn release(&self) {
        drop(
            self.permit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    pub(crate) fn mark_upgraded(&self) {
        self.upgraded.store(true, Relaxed);
    }

    pub(crate) fn is_upgraded(&self) -> bool {
        self.upgraded.load(Relaxed)
    }

    /// Ends the upgraded socket: its next read or write fails.
    fn cut(&self) {
        self.cut.store(true, Relaxed);
        self.waker.wake();
    }

    /// For an upgraded socket: the error its read or write gets once cut (registering the
    /// task to wake). Nothing to do on a connection that is not upgraded: one load.
    #[inline]
    pub(crate) fn interrupted(&self, cx: &Context<'_>) -> Option<io::Error> {
        if !self.upgraded.load(Relaxed) {
            return None;
        }
        self.waker.register(cx.waker());
        self.cut.load(Relaxed).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server's drain timeout ended this upgraded connection",
            )
        })
    }
}

/// The upgraded sockets still open, to cut at the drain deadline.
#[derive(Default)]
pub(crate) struct Upgraded(Mutex<Vec<Weak<ConnActivity>>>);

impl Upgraded {
    /// Remembers a connection whose socket was upgraded (forgetting those closed since).
    pub(crate) fn keep(&self, activity: &Arc<ConnActivity>) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|weak| weak.strong_count() > 0);
        list.push(Arc::downgrade(activity));
    }

    /// Cuts every upgraded socket still open; how many there were.
    pub(crate) fn cut_all(&self) -> usize {
        let list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.iter()
            .filter_map(Weak::upgrade)
            .inspect(|activity| activity.slot.cut())
            .count()
    }
}
