//! Hooks: middleware that acts before and after the rest of the stack without holding it.
//!
//! Consecutive hooks compile into one boundary driven by one loop (see [`HookGroup`]): a
//! synchronous hook allocates nothing (its state too, when it is zero-sized), an async hook
//! boxes only when it really waits. Each hook is still its own entry: named, ordered, timed
//! with its own exclusive time and blocking blame, its panics caught and named.

// A hook's answer is a `Response` in an `Err`: boxing it would cost an allocation on every
// short-circuit for no gain, since it is moved once.
#![allow(clippy::result_large_err)]

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::IntoResponse;
use futures_util::FutureExt;

use super::boundary::log_panic;
use super::chain::{Compiled, DynEntry, NextFuture};
use crate::error::internal_error;
use crate::instrument::report::StackReport;
use crate::instrument::request::{RequestCtx, NONE};
use crate::{Next, Request, Response};

/// A middleware that works on the request before the rest of the stack and on the response
/// after it, without wrapping the call: request ids, headers, CORS, access logs, auth, rate
/// limits and sessions are all hooks.
///
/// [`on_request`](Hook::on_request) returns a [`Flow`]: continue with a state for
/// [`on_response`](Hook::on_response), answer at once (a short-circuit: the rest of the stack
/// never runs), or wait on async work first (a cache, Redis, a database). On a short-circuit,
/// or an error further in, the hooks before this one still see the response, so their headers
/// land on every answer.
///
/// ```
/// use callnext::{Flow, Hook, HttpError, Request, Response, Stack, TestClient};
/// use std::time::Instant;
///
/// /// Rejects requests without an API key; times the rest and says how long it took.
/// struct ApiKey;
///
/// impl Hook for ApiKey {
///     type State = Instant;
///
///     fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Instant> {
///         match req.headers().get("x-api-key") {
///             Some(key) if key == "secret" => Flow::Continue(Instant::now()),
///             _ => Flow::respond(HttpError::unauthorized("Missing or invalid API key")),
///         }
///     }
///
///     fn on_response<'a>(&'a self, started: Instant, res: &'a mut Response) -> Flow<'a> {
///         let ms = started.elapsed().as_millis().to_string();
///         res.headers_mut().insert("x-elapsed-ms", ms.parse().unwrap());
///         Flow::Continue(())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let client = TestClient::new(Stack::new().hook(ApiKey).service(app));
///
/// assert_eq!(client.get("/").await.status(), 401);
/// let res = client.get("/").header("x-api-key", "secret").await;
/// assert_eq!(res.text(), "hi");
/// assert!(res.header("x-elapsed-ms").is_some());
/// # });
/// ```
///
/// Async work goes in [`Flow::wait`]; the future may borrow the hook and the request:
///
/// ```
/// use callnext::{Flow, Hook, HttpError, Request, Stack, TestClient};
///
/// #[derive(Clone)]
/// struct User(String);
///
/// struct LoadUser;
///
/// impl Hook for LoadUser {
///     type State = ();
///
///     fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a> {
///         Flow::wait(async move {
///             tokio::task::yield_now().await; // a database lookup, say
///             req.extensions_mut().insert(User("ada".into()));
///             Ok::<_, HttpError>(())
///         })
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = axum::Router::new().route(
///     "/",
///     axum::routing::get(|axum::Extension(user): axum::Extension<User>| async move { user.0 }),
/// );
/// let client = TestClient::new(Stack::new().hook(LoadUser).service(app));
/// assert_eq!(client.get("/").await.text(), "ada");
/// # });
/// ```
pub trait Hook: Send + Sync + 'static {
    /// What [`on_request`](Hook::on_request) hands to [`on_response`](Hook::on_response) for one
    /// request (`()` for none). A zero-sized state costs nothing; another one costs one small
    /// allocation per request.
    type State: Send + 'static;

    /// Runs on the request, before the entries after this one.
    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Self::State>;

    /// Runs on the response, after the entries after this one, with the state `on_request`
    /// continued with. [`Flow::Respond`] replaces the response. Not called when this hook's
    /// own `on_request` answered. Defaults to doing nothing.
    fn on_response<'a>(&'a self, state: Self::State, res: &'a mut Response) -> Flow<'a> {
        let _ = (state, res);
        Flow::Continue(())
    }
}

/// What a [`Hook`] says to do next.
#[derive(Debug)]
pub enum Flow<'a, S = ()> {
    /// Go on, keeping `S` for the response.
    Continue(S),
    /// Answer with this response (on the request: the rest of the stack does not run; on the
    /// response: it replaces the one from further in).
    Respond(Response),
    /// Wait for async work first; made by [`Flow::wait`].
    Wait(Waiting<'a, S>),
}

impl<'a, S: Send + 'static> Flow<'a, S> {
    /// Answer with `res` (anything that converts into a response, such as an
    /// [`HttpError`](crate::HttpError)).
    pub fn respond(res: impl IntoResponse) -> Self {
        Flow::Respond(res.into_response())
    }

    /// Wait for `future`: `Ok(state)` continues, `Err(e)` answers with `e`. The future may
    /// borrow the hook and the request (or, on the response side, the response).
    pub fn wait<F, E>(future: F) -> Self
    where
        F: Future<Output = Result<S, E>> + Send + 'a,
        E: IntoResponse,
    {
        Flow::Wait(Waiting {
            future: Box::pin(future.map(|result| match result {
                Ok(state) => Ok(Box::new(state) as ErasedState),
                Err(e) => Err(Box::new(e.into_response())),
            })),
            _state: PhantomData,
        })
    }
}

/// The async work of a [`Flow::Wait`].
pub struct Waiting<'a, S> {
    future: WaitFuture<'a>,
    _state: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Waiting<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting").finish_non_exhaustive()
    }
}

type ErasedState = Box<dyn Any + Send>;
type WaitFuture<'a> = Pin<Box<dyn Future<Output = Result<ErasedState, Box<Response>>> + Send + 'a>>;

/// A hook's flow with its state erased, as the group loop sees it.
pub(crate) enum DynFlow<'a> {
    Continue(ErasedState),
    /// Boxed: a short-circuit is rare, and a small `DynFlow` is cheap to move on every call.
    Respond(Box<Response>),
    Wait(WaitFuture<'a>),
}

impl<'a, S: Send + 'static> From<Flow<'a, S>> for DynFlow<'a> {
    #[inline]
    fn from(flow: Flow<'a, S>) -> Self {
        match flow {
            // A zero-sized state is boxed without allocating.
            Flow::Continue(state) => DynFlow::Continue(Box::new(state)),
            Flow::Respond(res) => DynFlow::Respond(Box::new(res)),
            Flow::Wait(waiting) => DynFlow::Wait(waiting.future),
        }
    }
}

/// The object-safe form of a [`Hook`].
pub(crate) trait DynHook: Send + Sync + 'static {
    fn on_request<'a>(&'a self, req: &'a mut Request) -> DynFlow<'a>;
    fn on_response<'a>(&'a self, state: ErasedState, res: &'a mut Response) -> DynFlow<'a>;
}

pub(crate) struct HookAdapter<H>(pub(crate) H);

impl<H: Hook> DynHook for HookAdapter<H> {
    #[inline]
    fn on_request<'a>(&'a self, req: &'a mut Request) -> DynFlow<'a> {
        self.0.on_request(req).into()
    }

    #[inline]
    fn on_response<'a>(&'a self, state: ErasedState, res: &'a mut Response) -> DynFlow<'a> {
        match state.downcast::<H::State>() {
            Ok(state) => self.0.on_response(*state, res).into(),
            // The group only ever hands a hook the state it made.
            Err(_) => DynFlow::Respond(Box::new(internal_error())),
        }
    }
}

/// What a closure hook may return: nothing, or a `Result` whose error answers.
pub trait HookOutcome {
    /// `Err` answers with that response.
    fn into_result(self) -> Result<(), Response>;
}

impl HookOutcome for () {
    #[inline]
    fn into_result(self) -> Result<(), Response> {
        Ok(())
    }
}

impl<E: IntoResponse> HookOutcome for Result<(), E> {
    #[inline]
    fn into_result(self) -> Result<(), Response> {
        self.map_err(IntoResponse::into_response)
    }
}

/// A synchronous closure on the request (see [`Stack::on_request`](crate::Stack::on_request)).
pub(crate) struct RequestFn<F>(pub(crate) F);

impl<F, R> Hook for RequestFn<F>
where
    F: Fn(&mut Request) -> R + Send + Sync + 'static,
    R: HookOutcome,
{
    type State = ();

    #[inline]
    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a> {
        match (self.0)(req).into_result() {
            Ok(()) => Flow::Continue(()),
            Err(res) => Flow::Respond(res),
        }
    }
}

/// A synchronous closure on the response (see [`Stack::on_response`](crate::Stack::on_response)).
pub(crate) struct ResponseFn<F>(pub(crate) F);

impl<F, R> Hook for ResponseFn<F>
where
    F: Fn(&mut Response) -> R + Send + Sync + 'static,
    R: HookOutcome,
{
    type State = ();

    #[inline]
    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a> {
        Flow::Continue(())
    }

    #[inline]
    fn on_response<'a>(&'a self, _state: (), res: &'a mut Response) -> Flow<'a> {
        match (self.0)(res).into_result() {
            Ok(()) => Flow::Continue(()),
            Err(replacement) => Flow::Respond(replacement),
        }
    }
}

/// The most hooks one group drives; a longer run of hooks becomes several groups.
pub(crate) const MAX_GROUP: usize = 8;

/// One hook of a group.
pub(crate) struct GroupHook {
    pub(crate) hook: std::sync::Arc<dyn DynHook>,
    pub(crate) name: Box<str>,
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
fn guarded<'a>(hook: &GroupHook, call: impl FnOnce() -> DynFlow<'a>) -> DynFlow<'a> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(flow) => flow,
        Err(payload) => {
            log_panic(&hook.name, &*payload);
            DynFlow::Respond(Box::new(internal_error()))
        }
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
            let outcome = match guarded(hook, move || hook.hook.on_request(req)) {
                DynFlow::Continue(state) => Ok(state),
                DynFlow::Respond(res) => Err(res),
                DynFlow::Wait(future) => TimedWait::new(ctx, report, hook, future).await,
            };
            match outcome {
                Ok(state) => {
                    states[ran] = Some(state);
                    ran += 1;
                }
                Err(res) => {
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
            let res_ref = &mut res;
            let replacement = match guarded(hook, move || hook.hook.on_response(state, res_ref)) {
                DynFlow::Continue(_) => None,
                DynFlow::Respond(replacement) => Some(replacement),
                DynFlow::Wait(future) => TimedWait::new(ctx, report, hook, future).await.err(),
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
        }
    }
}

impl Future for TimedWait<'_, '_> {
    type Output = Result<ErasedState, Box<Response>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let timed = this.ctx.timed;
        switch(this.ctx, this.report, this.hook.slot);
        if timed && this.started == 0 {
            this.started = this.ctx.mark();
        }
        let poll = catch_unwind(AssertUnwindSafe(|| this.future.as_mut().poll(cx)));
        switch(this.ctx, this.report, NONE);
        let poll = match poll {
            Ok(poll) => poll,
            Err(payload) => {
                log_panic(&this.hook.name, &*payload);
                Poll::Ready(Err(Box::new(internal_error())))
            }
        };
        if timed && poll.is_ready() {
            let waited = this.ctx.mark().saturating_sub(this.started);
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
