//! [`Boundary`]: where a panic becomes a 500 and a poll is timed.
//!
//! Each entry's future is boxed together with its boundary, so one layer costs one box and one
//! dynamic call. The entry is started inside the boundary on its first poll: the synchronous
//! part of a middleware's `call` (a struct middleware written as `fn call(..) -> impl Future`,
//! a tower service's `call`) is caught and timed as that middleware's own.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::IntoResponse;

use crate::error::internal_error;
use crate::instrument::report::StackReport;
use crate::instrument::request::RequestCtx;
use crate::Response;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<C, F> {
        Start { call: Option<C> },
        Running { #[pin] future: F },
        Done,
    }
}

pin_project_lite::pin_project! {
    /// One boundary of the stack around the future that `call` makes.
    pub(crate) struct Boundary<'a, C, F> {
        #[pin]
        state: State<C, F>,
        ctx: &'a RequestCtx,
        report: &'a StackReport,
        name: &'a str,
        slot: usize,
    }
}

impl<'a, C, F> Boundary<'a, C, F>
where
    C: FnOnce() -> F,
    F: Future,
    F::Output: IntoResponse,
{
    #[inline]
    pub(crate) fn new(
        ctx: &'a RequestCtx,
        report: &'a StackReport,
        name: &'a str,
        slot: usize,
        call: C,
    ) -> Self {
        Self {
            state: State::Start { call: Some(call) },
            ctx,
            report,
            name,
            slot,
        }
    }
}

impl<C, F> Future for Boundary<'_, C, F>
where
    C: FnOnce() -> F,
    F: Future,
    F::Output: IntoResponse,
{
    type Output = Response;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let ctx = *this.ctx;
        if !ctx.timed {
            return poll_state(this.state, this.name, cx);
        }
        let parent = ctx.enter(*this.slot);
        let poll = poll_state(this.state, this.name, cx);
        if ctx.exit(*this.slot, parent) {
            this.report.crossed(ctx, *this.slot);
        }
        poll
    }
}

#[inline]
fn poll_state<C, F>(
    mut state: Pin<&mut State<C, F>>,
    name: &str,
    cx: &mut Context<'_>,
) -> Poll<Response>
where
    C: FnOnce() -> F,
    F: Future,
    F::Output: IntoResponse,
{
    let polled = catch_unwind(AssertUnwindSafe(|| {
        if let StateProj::Start { call } = state.as_mut().project() {
            if let Some(call) = call.take() {
                let future = call();
                state.set(State::Running { future });
            }
        }
        match state.as_mut().project() {
            StateProj::Running { future } => future.poll(cx).map(IntoResponse::into_response),
            // Polled after it finished: answer rather than panic inside the server.
            _ => Poll::Ready(internal_error()),
        }
    }));
    match polled {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(res)) => {
            finish(state, name);
            Poll::Ready(res)
        }
        Err(payload) => {
            log_panic(name, &*payload);
            finish(state, name);
            Poll::Ready(internal_error())
        }
    }
}

/// Drops the finished (or panicked) future now; a drop that panics is caught too.
fn finish<C, F>(mut state: Pin<&mut State<C, F>>, name: &str) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| state.set(State::Done))) {
        log_panic(name, &*payload);
    }
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
