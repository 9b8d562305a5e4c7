//! The pipeline: an ordered, named [`Stack`] of entries in front of an app. Ordering happens
//! here.
//!
//! Registration order is execution order: the first entry added sees the request first and the
//! response last. A stack holds four kinds of entries ([`MiddlewareKind`]):
//!
//! | kind | written as | use it for |
//! |---|---|---|
//! | function | `async fn(Request, Next) -> impl IntoResponse` | the FastAPI way; wraps the rest of the stack |
//! | struct | `impl` [`Middleware`] | the same, with options in the struct |
//! | hook | `impl` [`Hook`] (`on_request` / `on_response`) | before/after work that never holds the rest of the stack: the cheapest kind |
//! | tower | any `tower::Layer` | reusing tower-http and the tower ecosystem |
//!
//! How a request moves, file by file: [`Stack`] (`builder.rs`; entries are added and ordered in
//! `ordering.rs` and made in `entry.rs`)
//! compiles (`compile.rs`) into a chain (`chain.rs`) that [`Next`] (`next.rs`) walks by index;
//! every entry runs inside its boundary (`boundary.rs`: a panic becomes a 500 there and each
//! poll is timed), consecutive hooks share one (`hook_group.rs`; the `Hook` trait is in `hook.rs`), tower layers are adapted in
//! `tower.rs`, the app and FastAPI's 404/405 are in `endpoint.rs`, and [`StackService`]
//! (`service.rs`) drives each request.

mod boundary;
mod builder;
mod chain;
mod compile;
mod endpoint;
mod entry;
mod erased;
mod error_settings;
mod finish;
mod future;
pub(crate) mod handlers;
mod hook;
mod hook_group;
mod inspect;
mod lint;
mod middleware;
mod next;
mod ordering;
mod service;
mod tower;

use ::tower::{BoxError, Service};
use bytes::Bytes;

pub use self::tower::NextService;
pub(crate) use boundary::panic_message;
pub use builder::Stack;
pub use entry::{Entry, EntryInfo, MiddlewareKind};
pub use future::ResponseFuture;
pub use hook::{AnsweredBy, Flow, Hook, HookOutcome, Waiting};
pub use lint::OrderWarning;
pub use middleware::{Middleware, MiddlewareFn, MiddlewareFnWithState};
pub use next::Next;
pub use service::StackService;

use crate::Request;

/// A response body a stack accepts from an app or a tower layer: bytes, with an error that
/// converts into a `BoxError`. Implemented for every such body.
pub trait ResponseBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
}

/// A tower service a stack can run: an app (usually an axum `Router`) or a tower layer's
/// service. Implemented for every cloneable, thread-safe `Service<Request>` whose errors convert
/// into a `BoxError` (they become 500 responses) and whose body is a [`ResponseBody`].
pub trait HttpService:
    Service<
        Request,
        Response = http::Response<Self::ResBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The service's response body.
    type ResBody: ResponseBody;
}

impl<S, B> HttpService for S
where
    S: Service<Request, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: ResponseBody,
{
    type ResBody = B;
}
