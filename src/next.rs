//! [`Next`]: the rest of the stack, as seen from inside a middleware.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;

use crate::instrument::{Ctx, PollTimer, RequestCtx};
use crate::service::Shared;
use crate::{error, Request, Response};

/// The rest of the stack: the middlewares after the current one, then the app.
///
/// [`Next::run`] consumes it, so the rest of the stack runs at most once per request. A
/// middleware that never calls it short-circuits with its own response.
///
/// ```compile_fail
/// use callnext::{Next, Request, Response};
///
/// async fn twice(req: Request, next: Next<'_>) -> Response {
///     let first = next.run(Request::default()).await;
///     next.run(req).await // error: `next` was moved by the first `run`
/// }
/// ```
///
/// A request walks the stack by index: `Next` borrows the stack and moves one step on, so no
/// middleware or service is cloned or boxed per layer to continue the chain.
pub struct Next<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) index: usize,
    pub(crate) ctx: &'a Ctx,
}

impl<'a> Next<'a> {
    /// Runs the rest of the stack with `req` and resolves to its response.
    ///
    /// Errors and panics further in have already become responses when this resolves, so the
    /// caller always gets a [`Response`] to inspect or decorate.
    pub fn run(self, req: Request) -> impl Future<Output = Response> + Send + 'a {
        let shared: &'a Shared = self.shared;
        let (future, name) = match shared.entries.get(self.index) {
            Some(entry) => {
                let next = Next {
                    shared: self.shared,
                    index: self.index + 1,
                    ctx: self.ctx,
                };
                (entry.middleware.call(req, next), &*entry.name)
            }
            None => (shared.endpoint.call(req, self.ctx), "app"),
        };
        Guarded {
            future,
            name,
            slot: self.index,
            ctx: self.ctx,
            timer: PollTimer::default(),
        }
    }

    /// The name of the middleware or endpoint that runs next (`"app"` for the app).
    pub fn name(&self) -> &str {
        self.shared
            .entries
            .get(self.index)
            .map_or("app", |entry| &entry.name)
    }
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("index", &self.index)
            .field("runs", &self.name())
            .finish()
    }
}

/// One boundary of the stack: turns a panic inside it into a 500 response at this point.
/// With instrumentation on, it also times each poll (see [`crate::instrument`]).
struct Guarded<'a> {
    future: BoxFuture<'a, Response>,
    name: &'a str,
    slot: usize,
    ctx: &'a RequestCtx,
    timer: PollTimer,
}

impl Future for Guarded<'_> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.get_mut();
        let ctx = this.ctx;
        if !ctx.timed {
            return poll_catching(&mut this.future, this.name, cx);
        }
        let started = this.timer.enter(ctx);
        let poll = poll_catching(&mut this.future, this.name, cx);
        this.timer.exit(ctx, this.slot, started, poll.is_ready());
        poll
    }
}

fn poll_catching(
    future: &mut BoxFuture<'_, Response>,
    name: &str,
    cx: &mut Context<'_>,
) -> Poll<Response> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
        Ok(poll) => poll,
        Err(payload) => {
            let message = panic_message(&*payload);
            tracing::error!(
                middleware = name,
                panic = message,
                "panic in middleware; answered 500"
            );
            Poll::Ready(panic_response())
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

fn panic_response() -> Response {
    error::json_response(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        &serde_json::json!({ "detail": "Internal Server Error" }),
    )
}
