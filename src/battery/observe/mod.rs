//! One view of what the client got: batteries that need the end of a response (the access
//! log, the concurrency limit's permit, background tasks) register an observer on it, and the
//! stack wraps the body once, as the last thing before the server sends it.
//!
//! An observer is told the status the client saw, the body bytes it was sent and whether the
//! body was sent in full, whatever other batteries rewrote around the one that registered it:
//! a battery outside may replace the body (the request id's error bodies) without making an
//! inner observer believe the client went away, because the observers travel in the
//! response's extensions, not in its body.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// An observer of one response: told once what the client got.
pub(crate) trait Observe: Send + 'static {
    /// The response has been sent in full, or dropped.
    fn delivered(self: Box<Self>, delivered: &Delivered);
}

impl<F: FnOnce(&Delivered) + Send + 'static> Observe for F {
    fn delivered(self: Box<Self>, delivered: &Delivered) {
        (*self)(delivered);
    }
}

type Callback = Box<dyn Observe>;

/// The observers registered on a response, in its extensions until the stack applies them:
/// the first two inline (the common case allocates no list), any more in a list.
///
/// Extensions must be `Clone` and `Sync`: a clone carries no observers (each runs once), and
/// the mutex is only ever reached through `&mut` (no lock is taken).
#[derive(Default)]
pub(crate) struct Observers(Mutex<List>);

#[derive(Default)]
struct List {
    first: Option<Callback>,
    second: Option<Callback>,
    more: Vec<Callback>,
}

impl List {
    fn push(&mut self, callback: Callback) {
        if self.first.is_none() {
            self.first = Some(callback);
        } else if self.second.is_none() {
            self.second = Some(callback);
        } else {
            self.more.push(callback);
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn append(&mut self, other: List) {
        for observer in [other.first, other.second].into_iter().flatten() {
            self.push(observer);
        }
        for observer in other.more {
            self.push(observer);
        }
    }

    /// Tells each observer, once.
    fn tell(&mut self, delivered: &Delivered) {
        if let Some(observer) = self.first.take() {
            observer.delivered(delivered);
        }
        if let Some(observer) = self.second.take() {
            observer.delivered(delivered);
        }
        if !self.more.is_empty() {
            for observer in self.more.drain(..) {
                observer.delivered(delivered);
            }
        }
    }
}

impl Clone for Observers {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Observers {
    fn take(self) -> List {
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
    observe_boxed(res, Box::new(observer));
}

/// [`observe`] with an observer already boxed (a battery's per-request state, say: no second
/// allocation).
pub(crate) fn observe_boxed(res: &mut Response, observer: Callback) {
    // Inside a stack's poll, the stack collects it (no extension, no map to allocate);
    // anywhere else (a task of its own, say), it travels in the response's extensions.
    let Some(observer) = COLLECTING.with(|collecting| match &mut *collecting.borrow_mut() {
        Collector::On(list) => {
            list.get_or_insert_with(Box::default).push(observer);
            None
        }
        Collector::Off => Some(observer),
    }) else {
        return;
    };
    IN_EXTENSIONS.store(true, Ordering::Relaxed);
    let observers = res.extensions_mut().get_or_insert_default::<Observers>();
    observers
        .0
        .get_mut()
        .unwrap_or_else(|e| e.into_inner())
        .push(observer);
}

/// Whether an observer was ever registered outside a stack's poll: until then, no response's
/// extensions need looking into (a map lookup on every response saved).
static IN_EXTENSIONS: AtomicBool = AtomicBool::new(false);

/// Whether a stack is polling a request on this thread, and what was registered so far.
enum Collector {
    Off,
    On(Option<Box<List>>),
}

thread_local! {
    /// The observers registered while a stack polls a request, collected for its response.
    static COLLECTING: RefCell<Collector> = const { RefCell::new(Collector::Off) };
}

pin_project_lite::pin_project! {
    /// A request through a stack, polled inside its span: the observers registered while it
    /// is polled are collected into the request's own list (boxed once there is one: the
    /// request's future stays small), then applied with those in the response's extensions.
    pub(crate) struct Collecting<'a, F> {
        #[pin]
        inner: F,
        span: Option<&'a tracing::Span>,
        list: Option<Box<List>>,
    }
}

impl<'a, F> Collecting<'a, F> {
    pub(crate) fn new(inner: F, span: Option<&'a tracing::Span>) -> Self {
        Self {
            inner,
            span,
            list: None,
        }
    }
}

/// Puts back what was being collected when a poll began, even if the poll panics.
struct Restore<'a> {
    outer: Option<Collector>,
    list: &'a mut Option<Box<List>>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let outer = self.outer.take().unwrap_or(Collector::Off);
        if let Collector::On(ours) = COLLECTING.with(|collecting| collecting.replace(outer)) {
            *self.list = ours;
        }
    }
}

/// The observers collected while a request was polled, to [`apply`] to its response.
pub(crate) struct Collected(Option<Box<List>>);

impl<F: Future<Output = Response>> Future for Collecting<'_, F> {
    type Output = (Response, Collected);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.map(tracing::Span::enter);
        // A stack inside a route of another collects its own, then lets the outer go on.
        let ours = Collector::On(this.list.take());
        let outer = COLLECTING.with(|collecting| collecting.replace(ours));
        let restore = Restore {
            outer: Some(outer),
            list: this.list,
        };
        let polled = this.inner.poll(cx);
        drop(restore);
        match polled {
            Poll::Ready(res) => Poll::Ready((res, Collected(this.list.take()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Wraps the body of `res` once for every observer registered on it, `collected` while the
/// stack polled the request or in its extensions (none: untouched).
pub(crate) fn apply(mut res: Response, collected: Collected) -> Response {
    let in_extensions = if IN_EXTENSIONS.load(Ordering::Relaxed) {
        res.extensions_mut().remove::<Observers>()
    } else {
        None
    };
    let mut observers = match (collected.0, in_extensions) {
        (None, None) => return res,
        (Some(list), None) => list,
        (list, Some(more)) => {
            let mut list = list.unwrap_or_default();
            list.append(more.take());
            list
        }
    };
    if observers.is_empty() {
        return res;
    }
    let status = res.status();
    if http_body::Body::is_end_stream(res.body()) {
        observers.tell(&Delivered {
            status,
            bytes: 0,
            complete: true,
        });
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
        observers: Box<List>,
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

fn tell(observers: &mut List, status: StatusCode, bytes: u64, complete: bool) {
    if observers.is_empty() {
        return;
    }
    observers.tell(&Delivered {
        status,
        bytes,
        complete,
    });
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
mod tests;
