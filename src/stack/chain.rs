//! The compiled chain: a built stack's entries laid out contiguously, then the endpoint.
//!
//! A tower layer wraps the rest of the stack as an owned service, built once per stack
//! service, so the chain is cut into segments at each tower entry: the layer's service holds the
//! segment after it, and the segment before it ends with the layer. No segment points back at
//! one before it, so nothing forms a cycle.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::endpoint::Endpoint;
use super::next::Next;
use crate::instrument::report::StackReport;
use crate::{Request, Response};

/// The future of one boundary: the entry's own box.
pub(crate) type NextFuture<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

/// What every compiled entry is: a function or struct middleware, a group of consecutive
/// hooks, or a tower layer's service.
pub(crate) trait DynEntry: Send + Sync + 'static {
    /// Starts this entry for `req`; `next` continues with the entries after it.
    fn call<'a>(&'a self, req: Request, next: Next<'a>, at: &'a Compiled) -> NextFuture<'a>;
}

/// One compiled entry: the middleware and where its figures go.
pub(crate) struct Compiled {
    pub(crate) entry: Arc<dyn DynEntry>,
    /// For a hook group, its first hook's name (each hook's name is in the group).
    pub(crate) name: Box<str>,
    /// Its boundary's slot in the request's context (a hook group: its first hook's).
    pub(crate) slot: usize,
}

/// A segment of a built stack: entries, then either the endpoint or (when the last entry is a
/// tower layer, which holds the next segment) nothing.
pub(crate) struct Chain {
    pub(crate) entries: Box<[Compiled]>,
    pub(crate) endpoint: Option<Box<dyn Endpoint>>,
    pub(crate) report: Arc<StackReport>,
}
