//! One view of what the client got: batteries that need the end of a response (the access
//! log, the concurrency limit's permit, background tasks) register an observer on it, and the
//! stack wraps the body once, as the last thing before the server sends it.
//!
//! An observer is told the status the client saw, the body bytes it was sent and whether the
//! body was sent in full, whatever other batteries rewrote around the one that registered it:
//! a battery outside may replace the body (the request id's error bodies) without making an
//! inner observer believe the client went away, because the observers travel in the
//! response's extensions, not in its body.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};

use crate::Response;

/// What the client got: told to every observer once, when the response's body has been sent
/// or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    status: StatusCode,
    bytes: u64,
    complete: bool,
}

impl Delivered {
    /// The status of the response the server sent (the one the client saw, after every
    /// battery had its say).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Body bytes handed to the server for the client (after compression, when a
    /// compression battery ran).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the body was sent in full; `false` when the client went away first (or the
    /// body failed).
    pub fn complete(&self) -> bool {
        self.complete
    }
}

type Callback = Box<dyn FnOnce(&Delivered) + Send>;

/// The observers registered on a response, in its extensions until the stack applies them.
///
/// Extensions must be `Clone` and `Sync`: a clone carries no observers (each runs once), and
/// the mutex is only ever reached through `&mut` (no lock is taken).
#[derive(Default)]
pub(crate) struct Observers(Mutex<Vec<Callback>>);

impl Clone for Observers {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Observers {
    fn take(self) -> Vec<Callback> {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// Calls `observer` once the client has been sent `res`'s body in full, or the body was
/// dropped before (the client went away): with the final status and the bytes sent, as the
/// server sent them.
///
/// Works for responses that go through a [`Stack`](crate::Stack), which applies the observers
/// when its own response is ready (one body wrapper, however many observers). If the response
/// is replaced by a new one outside (its extensions lost), the observer is dropped without
/// being called: an observer that must always report does so in its `Drop`.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use callnext::battery::observe;
/// use callnext::{Flow, Hook, Request, Response, Stack, TestClient};
///
/// /// Remembers the status and size of each answer.
/// #[derive(Clone, Default)]
/// struct Sizes(Arc<Mutex<Vec<(u16, u64)>>>);
///
/// impl Hook for Sizes {
///     type State = ();
///     fn on_request<'a>(&'a self, _: &'a mut Request) -> Flow<'a> {
///         Flow::Continue(())
///     }
///     fn on_response<'a>(&'a self, _: (), res: &'a mut Response) -> Flow<'a> {
///         let seen = Arc::clone(&self.0);
///         observe(res, move |d| seen.lock().unwrap().push((d.status().as_u16(), d.bytes())));
///         Flow::Continue(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let sizes = Sizes::default();
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
/// let client = TestClient::new(Stack::new().hook(sizes.clone()).service(app));
/// assert_eq!(client.get("/").await.text(), "hello");
/// assert_eq!(*sizes.0.lock().unwrap(), [(200, 5)]);
/// # });
/// ```
pub fn observe(res: &mut Response, observer: impl FnOnce(&Delivered) + Send + 'static) {
    let observers = res.extensions_mut().get_or_insert_default::<Observers>();
    observers
        .0
        .get_mut()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(observer));
}

/// Wraps the body of `res` once for every observer registered on it (none: untouched).
pub(crate) fn apply(mut res: Response) -> Response {
    let Some(observers) = res.extensions_mut().remove::<Observers>() else {
        return res;
    };
    let observers = observers.take();
    if observers.is_empty() {
        return res;
    }
    let status = res.status();
    if http_body::Body::is_end_stream(res.body()) {
        let delivered = Delivered {
            status,
            bytes: 0,
            complete: true,
        };
        for observer in observers {
            observer(&delivered);
        }
        return res;
    }
    res.map(|body| {
        Body::new(Observed {
            body,
            observers,
            status,
            bytes: 0,
        })
    })
}

pin_project_lite::pin_project! {
    /// The response body: counts bytes out and tells the observers at its end, or when dropped.
    struct Observed {
        #[pin]
        body: Body,
        observers: Vec<Callback>,
        status: StatusCode,
        bytes: u64,
    }

    impl PinnedDrop for Observed {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Sent in full (hyper stops polling a body that says it has ended), or cut short.
            let complete = http_body::Body::is_end_stream(&*this.body);
            tell(this.observers, *this.status, *this.bytes, complete);
        }
    }
}

fn tell(observers: &mut Vec<Callback>, status: StatusCode, bytes: u64, complete: bool) {
    if observers.is_empty() {
        return;
    }
    let delivered = Delivered {
        status,
        bytes,
        complete,
    };
    for observer in observers.drain(..) {
        observer(&delivered);
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        let polled = this.body.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                }
                if this.body.is_end_stream() {
                    tell(this.observers, *this.status, *this.bytes, true);
                }
            }
            Poll::Ready(None) => tell(this.observers, *this.status, *this.bytes, true),
            Poll::Ready(Some(Err(_))) => tell(this.observers, *this.status, *this.bytes, false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn recorder() -> (
        Arc<std::sync::Mutex<Vec<Delivered>>>,
        impl FnOnce(&Delivered) + Send + 'static,
    ) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let push = {
            let seen = Arc::clone(&seen);
            move |d: &Delivered| seen.lock().unwrap().push(*d)
        };
        (seen, push)
    }

    #[tokio::test]
    async fn a_body_replaced_after_observing_is_reported_as_sent() {
        let (seen, push) = recorder();
        let mut res = Response::new(Body::from("inner"));
        observe(&mut res, push);
        // An outer battery rewrites the body and the status.
        *res.body_mut() = Body::from("rewritten!");
        *res.status_mut() = StatusCode::NOT_FOUND;
        let res = apply(res);
        assert!(seen.lock().unwrap().is_empty());
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], b"rewritten!");
        assert_eq!(
            *seen.lock().unwrap(),
            [Delivered {
                status: StatusCode::NOT_FOUND,
                bytes: 10,
                complete: true
            }]
        );
    }

    #[test]
    fn a_body_dropped_unsent_is_incomplete_and_empty_bodies_are_told_at_once() {
        let (seen, push) = recorder();
        let mut res = Response::new(Body::from("never sent"));
        observe(&mut res, push);
        drop(apply(res));
        assert_eq!(
            *seen.lock().unwrap(),
            [Delivered {
                status: StatusCode::OK,
                bytes: 0,
                complete: false
            }]
        );

        let (seen, push) = recorder();
        let mut res = Response::new(Body::empty());
        observe(&mut res, push);
        let (_, second) = recorder();
        observe(&mut res, second);
        let _res = apply(res);
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(seen.lock().unwrap()[0].complete);
    }

    #[test]
    fn clones_of_extensions_carry_no_observers() {
        let (seen, push) = recorder();
        let mut res = Response::new(Body::empty());
        observe(&mut res, push);
        let copy = res.extensions().clone();
        assert!(copy.get::<Observers>().unwrap().clone().take().is_empty());
        let _res = apply(res);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
