//! Hooks: middleware that acts before and after the rest of the stack without holding it.
//!
//! Consecutive hooks compile into one boundary driven by one loop (`hook_group.rs`): a
//! synchronous hook allocates nothing (its state too, when it is zero-sized), an async hook
//! boxes only when it really waits. Each hook is still its own entry: named, ordered, timed
//! with its own exclusive time and blocking blame, its panics caught and named.

// A hook's answer is a `Response` in an `Err`: boxing it would cost an allocation on every
// short-circuit for no gain, since it is moved once.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use axum::response::IntoResponse;
use futures_util::FutureExt;

use crate::error::internal_error;
use crate::{Request, Response};

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

    /// What it offers the rest of the system: its kind and place in the order (for the
    /// linter), its stores (for the live page), a flush at shutdown, its metrics. Defaults to
    /// none.
    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new()
    }
}

/// What a [`Hook`] says to do next.
#[derive(Debug)]
#[must_use = "a Flow does nothing unless the hook returns it"]
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
                Ok(state) => Ok(ErasedState::new(state)),
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

pub(crate) use super::erased::ErasedState;
pub(crate) type WaitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ErasedState, Box<Response>>> + Send + 'a>>;

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
            Flow::Continue(state) => DynFlow::Continue(ErasedState::new(state)),
            Flow::Respond(res) => DynFlow::Respond(Box::new(res)),
            Flow::Wait(waiting) => DynFlow::Wait(waiting.future),
        }
    }
}

/// A hook's flow on the response side, where there is no state to carry on.
pub(crate) enum ResponseFlow<'a> {
    Continue,
    Respond(Box<Response>),
    Wait(WaitFuture<'a>),
}

impl<'a> From<Flow<'a, ()>> for ResponseFlow<'a> {
    #[inline]
    fn from(flow: Flow<'a, ()>) -> Self {
        match flow {
            Flow::Continue(()) => ResponseFlow::Continue,
            Flow::Respond(res) => ResponseFlow::Respond(Box::new(res)),
            Flow::Wait(waiting) => ResponseFlow::Wait(waiting.future),
        }
    }
}

/// The object-safe form of a [`Hook`].
pub(crate) trait DynHook: Send + Sync + 'static {
    fn on_request<'a>(&'a self, req: &'a mut Request) -> DynFlow<'a>;
    fn on_response<'a>(&'a self, state: ErasedState, res: &'a mut Response) -> ResponseFlow<'a>;
}

pub(crate) struct HookAdapter<H>(pub(crate) H);

impl<H: Hook> DynHook for HookAdapter<H> {
    #[inline]
    fn on_request<'a>(&'a self, req: &'a mut Request) -> DynFlow<'a> {
        self.0.on_request(req).into()
    }

    #[inline]
    fn on_response<'a>(&'a self, state: ErasedState, res: &'a mut Response) -> ResponseFlow<'a> {
        match state.into_state::<H::State>() {
            Some(state) => self.0.on_response(state, res).into(),
            // The group only ever hands a hook the state it made.
            None => ResponseFlow::Respond(Box::new(internal_error())),
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

/// On a response a middleware answered itself, before the rest of the stack ran (a hook's
/// `Flow::Respond` on the request side, a shed or timed-out request): that entry's name, for
/// the access log and outer middlewares.
///
/// ```
/// use callnext::{AnsweredBy, HttpError, Stack, TestClient};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let stack = Stack::new().on_request("deny", |_req: &mut callnext::Request| {
///     Err::<(), _>(HttpError::forbidden("no"))
/// });
/// let res = TestClient::new(stack.service(axum::Router::new())).get("/").await;
/// assert_eq!(res.extensions().get::<AnsweredBy>().unwrap().name(), "deny");
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredBy(std::sync::Arc<str>);

impl AnsweredBy {
    pub(crate) fn new(name: std::sync::Arc<str>) -> Self {
        Self(name)
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}
