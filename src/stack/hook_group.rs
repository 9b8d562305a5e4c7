//! A run of consecutive hooks compiled into one boundary: one future drives every hook's
//! `on_request`, the rest of the stack, then every `on_response` in reverse, timing each hook
//! call with one clock read per transition and catching each hook's panics under its name.

// A hook's answer is a `Response` in an `Err`, moved once.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::boundary::panic_response;
use super::chain::{Compiled, DynEntry, NextFuture};
use super::hook::{DynFlow, DynHook, ErasedState, ResponseFlow, WaitFuture};
use crate::instrument::report::StackReport;
use crate::instrument::request::{RequestCtx, NONE};
use crate::{AnsweredBy, Next, Request, Response};

/// The most hooks one group drives; a longer run of hooks becomes several groups.
pub(crate) const MAX_GROUP: usize = 8;

/// One hook of a group.
pub(crate) struct GroupHook {
    pub(crate) hook: Arc<dyn DynHook>,
    pub(crate) name: Arc<str>,
    pub(crate) slot: usize,
}

/// Consecutive hooks, compiled into one boundary.
pub(crate) struct HookGroup {
    pub(crate) hooks: Box<[GroupHook]>,
}

impl DynEntry for HookGroup {
    #[inline]
    fn call<'a>(&'a self, req: Request, next: Next<'a>, at: &'a Compiled) -> NextFuture<'a> {
        let (ctx, report) = (&**next.ctx, &*next.chain.report);
        Box::pin(GroupFuture {
            inner: run_group(self, req, next),
            ctx,
            report,
            first_slot: at.slot,
        })
    }
}

/// The control passes to `to`; a hook that just finished a call over the threshold is blamed.
#[inline]
fn switch(ctx: &RequestCtx, report: &StackReport, to: usize) {
    if ctx.timed {
        if let Some(slot) = ctx.switch(to) {
            report.crossed(ctx, slot);
        }
    }
}

/// Calls one hook method, catching its panic as that hook's 500.
#[inline]
fn guarded<T>(
    hook: &GroupHook,
    debug: bool,
    call: impl FnOnce() -> T,
    answer: fn(Box<Response>) -> T,
) -> T {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(flow) => flow,
        Err(payload) => answer(Box::new(panic_response(&hook.name, &*payload, debug))),
    }
}

/// Drives one request through a group's hooks and the rest of the stack.
///
/// Not an `async fn`: one keeps each argument twice in its future (the argument and the local it
/// is moved into), and the request is the largest thing here.
#[allow(clippy::manual_async_fn)] // see above
fn run_group<'a>(
    group: &'a HookGroup,
    mut req: Request,
    next: Next<'a>,
) -> impl Future<Output = Response> + Send + 'a {
    async move {
        let (ctx, report) = (&**next.ctx, &*next.chain.report);
        let hooks = &group.hooks;
        let mut states: [Option<ErasedState>; MAX_GROUP] = Default::default();
        // How many hooks continued: their `on_response` runs, in reverse.
        let mut ran = 0;
        let mut early = None;
        while let Some(hook) = hooks.get(ran) {
            switch(ctx, report, hook.slot);
            let req = &mut req;
            let outcome = match guarded(
                hook,
                report.debug,
                move || hook.hook.on_request(req),
                DynFlow::Respond,
            ) {
                DynFlow::Continue(state) => Ok(state),
                DynFlow::Respond(res) => Err(res),
                DynFlow::Wait(future) => TimedWait::new(ctx, report, hook, future).await,
            };
            match outcome {
                Ok(state) => {
                    states[ran] = Some(state);
                    ran += 1;
                }
                Err(mut res) => {
                    // Who answered, for the access log.
                    if res.extensions().get::<AnsweredBy>().is_none() {
                        res.extensions_mut()
                            .insert(AnsweredBy::new(Arc::clone(&hook.name)));
                    }
                    early = Some(res);
                    break;
                }
            }
        }
        switch(ctx, report, NONE);
        let mut res = match early {
            Some(res) => *res,
            None => next.start(req).await,
        };
        while ran > 0 {
            ran -= 1;
            let hook = &hooks[ran];
            let Some(state) = states[ran].take() else {
                continue;
            };
            switch(ctx, report, hook.slot);
            let replacement = {
                let res_ref = &mut res;
                let flow: ResponseFlow<'_> = guarded(
                    hook,
                    report.debug,
                    move || hook.hook.on_response(state, res_ref),
                    ResponseFlow::Respond,
                );
                match flow {
                    ResponseFlow::Continue => None,
                    ResponseFlow::Respond(replacement) => Some(replacement),
                    ResponseFlow::Wait(future) => {
                        TimedWait::new(ctx, report, hook, future).await.err()
                    }
                }
            };
            if let Some(replacement) = replacement {
                res = *replacement;
            }
        }
        res
    }
}

/// A hook's async work, each poll timed as the hook's and its panics caught.
struct TimedWait<'a, 'f> {
    future: WaitFuture<'f>,
    ctx: &'a RequestCtx,
    report: &'a StackReport,
    hook: &'a GroupHook,
    /// When it was first polled, for the hook's waiting time.
    started: u64,
    /// Ticks spent in its polls (exclusive time, kept out of the waiting time).
    polled: u64,
}

impl<'a, 'f> TimedWait<'a, 'f> {
    fn new(
        ctx: &'a RequestCtx,
        report: &'a StackReport,
        hook: &'a GroupHook,
        future: WaitFuture<'f>,
    ) -> Self {
        Self {
            future,
            ctx,
            report,
            hook,
            started: 0,
            polled: 0,
        }
    }
}

impl Future for TimedWait<'_, '_> {
    type Output = Result<ErasedState, Box<Response>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let timed = this.ctx.timed;
        switch(this.ctx, this.report, this.hook.slot);
        let poll_start = this.ctx.mark();
        if timed && this.started == 0 {
            this.started = poll_start;
        }
        let poll = catch_unwind(AssertUnwindSafe(|| this.future.as_mut().poll(cx)));
        switch(this.ctx, this.report, NONE);
        this.polled += this.ctx.mark().saturating_sub(poll_start);
        let poll = match poll {
            Ok(poll) => poll,
            Err(payload) => Poll::Ready(Err(Box::new(panic_response(
                &this.hook.name,
                &*payload,
                this.report.debug,
            )))),
        };
        if timed && poll.is_ready() {
            let total = this.ctx.mark().saturating_sub(this.started);
            let waited = total.saturating_sub(this.polled);
            this.ctx.add_waited(this.hook.slot, waited);
        }
        poll
    }
}

pin_project_lite::pin_project! {
    /// The group's boundary: hands the thread back to the boundary outside it after each poll,
    /// finishing the hook call that was running.
    struct GroupFuture<'a, F> {
        #[pin]
        inner: F,
        ctx: &'a RequestCtx,
        report: &'a StackReport,
        first_slot: usize,
    }
}

impl<F: Future<Output = Response>> Future for GroupFuture<'_, F> {
    type Output = Response;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let ctx = *this.ctx;
        if !ctx.timed {
            return this.inner.poll(cx);
        }
        let parent = ctx.enter(NONE);
        let start = ctx.mark();
        let poll = this.inner.poll(cx);
        switch(ctx, this.report, NONE);
        ctx.resume(parent);
        ctx.group_span(*this.first_slot, start, ctx.mark());
        poll
    }
}
