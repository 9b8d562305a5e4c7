//! One view of what the client got: batteries that need the end of a response (the access
//! log, the concurrency limit's permit, background tasks) register an observer on it, and the
//! stack wraps the body once, as the last thing before the server sends it.
//!
//! An observer is told the status the client saw, the body bytes it was sent and whether the
//! body was sent in full, whatever other batteries rewrote around the one that registered it:
//! a battery outside may replace the body (the request id's error bodies) without making an
//! inner observer believe the client went away, because the observers travel in the
//! response's extensions, not in its body.

use std::cell::Cell;
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

    /// Where the observer registered after this one is linked: a response's observers are
    /// chained through their own boxes, so registering one allocates nothing more.
    fn next(&mut self) -> &mut Chain;
}

/// A closure as an observer, with its link.
struct Node<F> {
    next: Chain,
    observer: F,
}

impl<F: FnOnce(&Delivered) + Send + 'static> Observe for Node<F> {
    fn delivered(self: Box<Self>, delivered: &Delivered) {
        let Self { observer, .. } = *self;
        observer(delivered);
    }

    fn next(&mut self) -> &mut Chain {
        &mut self.next
    }
}

type Callback = Box<dyn Observe>;

/// A response's observers, in the order they were registered, linked through their boxes.
#[derive(Default)]
pub(crate) struct Chain(Option<Callback>);

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "Chain([])"
        } else {
            "Chain([..])"
        })
    }
}

impl Chain {
    /// Adds `observer` (and any it links to) at the end.
    pub(crate) fn push(&mut self, observer: Callback) {
        let mut slot = &mut self.0;
        while let Some(node) = slot {
            slot = &mut node.next().0;
        }
        *slot = Some(observer);
    }

    /// Adds a closure at the end.
    pub(crate) fn observe(&mut self, observer: impl FnOnce(&Delivered) + Send + 'static) {
        self.push(Box::new(Node {
            next: Chain::default(),
            observer,
        }));
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Adds the observers of `other` at the end.
    fn push_chain(&mut self, other: Chain) {
        if let Some(first) = other.0 {
            self.push(first);
        }
    }

    /// Tells each observer, once, in order.
    fn tell(&mut self, delivered: &Delivered) {
        let mut next = self.0.take();
        while let Some(mut observer) = next {
            next = observer.next().0.take();
            observer.delivered(delivered);
        }
    }
}

/// The observers registered on a response outside a stack's poll, in its extensions until the
/// stack applies them.
///
/// Extensions must be `Clone` and `Sync`: a clone carries no observers (each runs once), and
/// the mutex is only ever reached through `&mut` (no lock is taken).
#[derive(Default)]
pub(crate) struct Observers(Mutex<Chain>);

impl Clone for Observers {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Observers {
    fn take(self) -> Chain {
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
    observe_boxed(
        res,
        Box::new(Node {
            next: Chain::default(),
            observer,
        }),
    );
}

/// [`observe`] with an observer already boxed (a battery's per-request state, say: no second
/// allocation).
pub(crate) fn observe_boxed(res: &mut Response, observer: Callback) {
    // Inside a stack's poll, the stack collects it (no extension, no map to allocate);
    // anywhere else (a task of its own, say), it travels in the response's extensions.
    let Some(observer) = COLLECTING.with(|collecting| match collecting.take() {
        Some(mut chain) => {
            chain.push(observer);
            collecting.set(Some(chain));
            None
        }
        None => Some(observer),
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

thread_local! {
    /// While a stack polls a request on this thread, the observers registered so far in that
    /// poll (`None`: no stack is polling).
    static COLLECTING: Cell<Option<Chain>> = const { Cell::new(None) };
}

pin_project_lite::pin_project! {
    /// A request through a stack, polled inside its span: the observers registered while it
    /// is polled are collected into `chain`, the request's own, to [`apply`] to its response.
    pub(crate) struct Collecting<'a, F> {
        #[pin]
        inner: F,
        span: Option<&'a tracing::Span>,
        chain: &'a mut Chain,
    }
}

impl<'a, F> Collecting<'a, F> {
    pub(crate) fn new(inner: F, span: Option<&'a tracing::Span>, chain: &'a mut Chain) -> Self {
        Self { inner, span, chain }
    }
}

/// Puts back what was being collected when a poll began, even if the poll panics.
struct Restore<'a> {
    outer: Option<Chain>,
    chain: &'a mut Chain,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let ours = COLLECTING.with(|collecting| collecting.replace(self.outer.take()));
        *self.chain = ours.unwrap_or_default();
    }
}

impl<F: Future<Output = Response>> Future for Collecting<'_, F> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let _entered = this.span.map(tracing::Span::enter);
        // A stack inside a route of another collects its own, then lets the outer go on.
        let ours = std::mem::take(&mut **this.chain);
        let outer = COLLECTING.with(|collecting| collecting.replace(Some(ours)));
        let _restore = Restore {
            outer,
            chain: this.chain,
        };
        this.inner.poll(cx)
    }
}

/// Wraps the body of `res` once for every observer registered on it, `collected` while the
/// stack polled the request or in its extensions (none: untouched).
pub(crate) fn apply(res: &mut Response, mut observers: Chain) {
    if IN_EXTENSIONS.load(Ordering::Relaxed) {
        if let Some(more) = res.extensions_mut().remove::<Observers>() {
            observers.push_chain(more.take());
        }
    }
    if observers.is_empty() {
        return;
    }
    let status = res.status();
    if http_body::Body::is_end_stream(res.body()) {
        observers.tell(&Delivered {
            status,
            bytes: 0,
            complete: true,
        });
        return;
    }
    let body = std::mem::take(res.body_mut());
    *res.body_mut() = Body::new(Observed {
        body,
        observers,
        status,
        bytes: 0,
    });
}

pin_project_lite::pin_project! {
    /// The response body: counts bytes out and tells the observers at its end, or when dropped.
    struct Observed {
        #[pin]
        body: Body,
        observers: Chain,
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

fn tell(observers: &mut Chain, status: StatusCode, bytes: u64, complete: bool) {
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
