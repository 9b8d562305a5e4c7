//! [`Boundary`]: where a panic becomes a 500 and a poll is timed.
//!
//! Each entry's future is boxed together with its boundary, so one layer costs one box and one
//! dynamic call. Making the entry's future (the synchronous part of its `call`) is guarded too:
//! a panic there is that entry's 500, logged under its name.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::IntoResponse;

use super::chain::NextFuture;
use crate::error::internal_error;
use crate::instrument::report::StackReport;
use crate::instrument::request::RequestCtx;
use crate::Response;

pin_project_lite::pin_project! {
    /// One boundary of the stack around an entry's future.
    pub(crate) struct Boundary<'a, F> {
        #[pin]
        future: F,
        ctx: &'a RequestCtx,
        report: &'a StackReport,
        name: &'a str,
        slot: usize,
    }
}

/// Makes an entry's future with `call` and boxes it inside its boundary. A panic in `call`
/// answers 500 at once, as the entry's own.
#[inline]
pub(crate) fn start<'a, F>(
    ctx: &'a RequestCtx,
    report: &'a StackReport,
    name: &'a str,
    slot: usize,
    call: impl FnOnce() -> F,
) -> NextFuture<'a>
where
    F: Future + Send + 'a,
    F::Output: IntoResponse,
{
    // The box is made inside the guard: only a pointer leaves it, not the future.
    let boxed = catch_unwind(AssertUnwindSafe(|| -> NextFuture<'a> {
        Box::pin(Boundary {
            future: call(),
            ctx,
            report,
            name,
            slot,
        })
    }));
    boxed.unwrap_or_else(|payload| {
        Box::pin(std::future::ready(panic_response(
            name,
            &*payload,
            report.debug,
        )))
    })
}

impl<F> Future for Boundary<'_, F>
where
    F: Future,
    F::Output: IntoResponse,
{
    type Output = Response;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let ctx = *this.ctx;
        let debug = this.report.debug;
        let mut poll = if ctx.timed {
            let parent = ctx.enter(*this.slot);
            let poll = poll_guarded(this.future, this.name, debug, cx);
            if ctx.exit(*this.slot, parent) {
                this.report.crossed(ctx, *this.slot);
            }
            poll
        } else {
            poll_guarded(this.future, this.name, debug, cx)
        };
        // Errors are rendered by the stack's exception handlers where they become responses.
        if let (Poll::Ready(res), Some(handlers)) = (&mut poll, &this.report.handlers) {
            handlers.apply(res);
        }
        poll
    }
}

/// Polls the entry's future, turning its panic into a 500. A future that panicked (or
/// finished) panics again if polled again, which answers another 500: nothing unwinds further.
#[inline]
fn poll_guarded<F>(
    future: Pin<&mut F>,
    name: &str,
    debug: bool,
    cx: &mut Context<'_>,
) -> Poll<Response>
where
    F: Future,
    F::Output: IntoResponse,
{
    match catch_unwind(AssertUnwindSafe(|| {
        future.poll(cx).map(IntoResponse::into_response)
    })) {
        Ok(poll) => poll,
        Err(payload) => Poll::Ready(panic_response(name, &*payload, debug)),
    }
}

/// The 500 a panic caught at `name`'s boundary answers with (logged), carrying a
/// [`Panicked`](crate::Panicked) in its extensions for outer middlewares.
#[cold]
pub(crate) fn panic_response(
    name: &str,
    payload: &(dyn std::any::Any + Send),
    debug: bool,
) -> Response {
    log_panic(name, payload);
    let location = crate::error::take_panic_location();
    let message = panic_message(payload);
    let mut res = if debug {
        crate::error::json_response(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            &crate::error::DebugPanic {
                detail: "Internal Server Error",
                panic: message,
                entry: name,
                location: location.as_deref(),
            },
        )
    } else {
        internal_error()
    };
    if debug {
        res.extensions_mut().insert(crate::error::DebugPanicPage {
            entry: name.into(),
            message: message.into(),
            location: location.map(Into::into),
        });
    }
    res.extensions_mut().insert(crate::Panicked {
        entry: name.into(),
        message: message.into(),
    });
    res
}

/// Logs a panic caught at the boundary of the middleware `name`.
#[cold]
pub(crate) fn log_panic(name: &str, payload: &(dyn std::any::Any + Send)) {
    tracing::error!(
        middleware = name,
        panic = panic_message(payload),
        "panic in middleware; answered 500"
    );
}

/// A panic's message, when it has one.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}
