//! [`Next`]: the rest of the stack, as seen from inside a middleware.

use std::fmt;
use std::future::Future;

use super::chain::{Chain, NextFuture};
use crate::error::internal_error;
use crate::instrument::request::Ctx;
use crate::{Request, Response};

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
/// A request walks the stack by index: `Next` borrows the compiled stack and moves one step
/// on, so no middleware or service is cloned or boxed to continue the chain; each entry's own
/// future is the one box per layer.
pub struct Next<'a> {
    pub(crate) chain: &'a Chain,
    pub(crate) index: usize,
    pub(crate) ctx: &'a Ctx,
}

impl<'a> Next<'a> {
    /// Runs the rest of the stack with `req` and resolves to its response.
    ///
    /// Errors and panics further in have already become responses when this resolves, so the
    /// caller always gets a [`Response`] to inspect or decorate.
    #[inline]
    pub fn run(self, req: Request) -> impl Future<Output = Response> + Send + 'a {
        self.start(req)
    }

    #[inline]
    pub(crate) fn start(self, req: Request) -> NextFuture<'a> {
        let chain: &'a Chain = self.chain;
        match chain.entries.get(self.index) {
            Some(at) => {
                let next = Next {
                    chain,
                    index: self.index + 1,
                    ctx: self.ctx,
                };
                at.entry.call(req, next, at)
            }
            None => match &chain.endpoint {
                Some(endpoint) => endpoint.call(req, self.ctx, &chain.report),
                // A segment that ends with a tower layer never runs past it.
                None => {
                    debug_assert!(false, "ran past the end of a stack's segment");
                    tracing::error!("callnext ran past the end of a stack segment; answered 500");
                    Box::pin(std::future::ready(internal_error()))
                }
            },
        }
    }

    /// The name of the middleware or endpoint that runs next (`"app"` for the app).
    pub fn name(&self) -> &str {
        self.chain
            .entries
            .get(self.index)
            .map_or("app", |at| &at.name)
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
