//! [`ResponseFuture`]: what a [`StackService`](super::StackService) returns for a request.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::instrument::request::StackPoll;
use crate::Response;

/// The future of one request through a [`StackService`](super::StackService).
pub struct ResponseFuture(pub(super) Pin<Box<dyn Future<Output = Response> + Send>>);

impl Future for ResponseFuture {
    type Output = Result<Response, Infallible>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A stack polled inside another stack's boundary keeps its time out of that boundary.
        let _poll = StackPoll::begin();
        self.0.as_mut().poll(cx).map(Ok)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
