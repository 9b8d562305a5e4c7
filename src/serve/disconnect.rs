//! [`Disconnect`]: whether the client of a request has gone (Starlette's
//! `request.is_disconnected()`), for requests served by callnext's server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Closed {
    closed: AtomicBool,
    notify: Notify,
}

impl Closed {
    /// The connection has ended: every waiter wakes.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Closes its connection's [`Disconnect`] when dropped: when the connection task ends, or is
/// aborted at the drain timeout.
pub(crate) struct CloseOnDrop(pub(crate) Arc<Closed>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The connection a request came on: ask whether it has closed, or wait until it does (to
/// stop work nobody will receive). On every request callnext's server serves; elsewhere the
/// extractor gives one that never closes.
///
/// ```no_run
/// use callnext::serve::Disconnect;
///
/// async fn report(disconnect: Disconnect) -> &'static str {
///     tokio::select! {
///         () = disconnect.wait() => "nobody is listening any more",
///         () = tokio::time::sleep(std::time::Duration::from_secs(30)) => "report ready",
///     }
/// }
/// # let _ = report;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Disconnect(pub(crate) Arc<Closed>);

impl Disconnect {
    /// Whether the client's connection has closed.
    pub fn is_disconnected(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Resolves once the client's connection has closed.
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_disconnected() {
                return;
            }
            notified.await;
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Disconnect {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_default())
    }
}
