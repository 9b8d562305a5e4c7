//! [`Capabilities`]: what an entry offers the rest of the system, so that the stack, the order
//! linter, the live page, the metrics and the drain ask each entry rather than know its type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::Backend;

/// Flushes an entry's buffered output, waiting at most the given time; `true` when all of it
/// was written.
pub(crate) type Flusher = Arc<dyn Fn(Duration) -> bool + Send + Sync>;

/// Gives an entry its own series when the stack records into a metrics registry (registry,
/// stack name, entry name).
#[cfg(feature = "prometheus")]
pub(crate) type MetricsHook = Arc<dyn Fn(&crate::metrics::Metrics, &str, &str) + Send + Sync>;

/// What an entry offers: its kind and its place in the order (for the linter), the stores it
/// talks to (for the live page), a flush at shutdown, its own metrics.
///
/// A [`Hook`](crate::Hook) or [`Middleware`](crate::Middleware) returns them from its
/// `capabilities` method; any entry (a function or a tower layer too) can be given them with
/// [`Entry::with_capabilities`](crate::Entry::with_capabilities). callnext's batteries offer
/// theirs the same way: nothing in the stack knows a battery's type.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use callnext::battery::Capabilities;
/// use callnext::{Entry, Next, Request, Response, Stack};
///
/// async fn audit(req: Request, next: Next<'_>) -> Response {
///     next.run(req).await
/// }
///
/// let flushed = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&flushed);
/// let caps = Capabilities::new().kind("audit").logs().flush(move |_timeout: Duration| {
///     counter.fetch_add(1, Ordering::SeqCst);
///     true
/// });
/// let stack = Stack::new().push(Entry::func(audit).with_capabilities(caps));
/// assert!(stack.flush(Duration::from_secs(1)));
/// assert_eq!(flushed.load(Ordering::SeqCst), 1);
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct Capabilities {
    pub(crate) kind: Option<&'static str>,
    pub(crate) order: Order,
    pub(crate) stores: Vec<Backend>,
    pub(crate) flush: Option<Flusher>,
    #[cfg(feature = "prometheus")]
    pub(crate) metrics: Option<MetricsHook>,
    /// Settings the operator chose that weaken what the entry guarantees: rule, message.
    pub(crate) cautions: Vec<(&'static str, String)>,
}

/// An entry's place in the recommended order, as the linter reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Order {
    /// Gives the request its id: belongs first.
    pub(crate) first: bool,
    /// Logs every answer: belongs outside everything that can answer early.
    pub(crate) logs: bool,
    /// Answers preflights and puts CORS headers on answers.
    pub(crate) cors: bool,
    /// Can answer without the rest of the stack.
    pub(crate) answers_early: bool,
    /// Its answers need CORS headers, and it must let preflights reach CORS.
    pub(crate) inside_cors: bool,
    /// Says who the caller is (authentication).
    pub(crate) identifies: bool,
    /// Keyed by who the caller is: belongs after what identifies.
    pub(crate) needs_identity: bool,
    /// Reads the matched route from the response.
    pub(crate) needs_route: bool,
    /// Refuses requests for hosts the application does not serve: belongs outside
    /// everything that answers.
    pub(crate) guards_host: bool,
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field("kind", &self.kind)
            .field("order", &self.order)
            .field("stores", &self.stores)
            .field("flush", &self.flush.is_some())
            .finish_non_exhaustive()
    }
}

impl Capabilities {
    /// None: what an entry offers unless it says more.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the entry is (`rate_limit`, `audit`): its name unless renamed, and its kind on
    /// the live page.
    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = Some(kind);
        self
    }

    /// It gives each request its id, so it belongs first (the linter's `request-id-first`).
    pub fn first(mut self) -> Self {
        self.order.first = true;
        self
    }

    /// It records every answer, so it belongs outside every entry that can answer early (the
    /// linter's `access-log-outside`). It also asks the app for the matched route on the
    /// response.
    pub fn logs(mut self) -> Self {
        self.order.logs = true;
        self.order.needs_route = true;
        self
    }

    /// It is the CORS entry: outside what answers with errors (the linter's `cors-outside`).
    pub fn cors(mut self) -> Self {
        self.order.cors = true;
        self
    }

    /// It can answer without the rest of the stack (a 401, a 429, a 503).
    pub fn answers_early(mut self) -> Self {
        self.order.answers_early = true;
        self
    }

    /// It answers early with errors a browser must be able to read, so CORS belongs outside
    /// it. Implies [`answers_early`](Self::answers_early).
    pub fn inside_cors(mut self) -> Self {
        self.order.inside_cors = true;
        self.order.answers_early = true;
        self
    }

    /// It refuses requests for hosts the application does not serve, so it belongs before
    /// every entry that answers or acts on the caller (the linter's `trusted-host-outside`);
    /// the request id and the access log, which only observe, may come first.
    pub fn guards_host(mut self) -> Self {
        self.order.guards_host = true;
        self
    }

    /// It says who the caller is (authentication).
    pub fn identifies(mut self) -> Self {
        self.order.identifies = true;
        self
    }

    /// It is keyed by who the caller is, so it belongs after what
    /// [`identifies`](Self::identifies) (the linter's `limit-after-auth`).
    pub fn needs_identity(mut self) -> Self {
        self.order.needs_identity = true;
        self
    }

    /// A setting that weakens what the entry guarantees, chosen on purpose (a JWT check that
    /// accepts any audience, say): reported by the linter (`--print-stack`, the warning logged
    /// when the stack is built) under `rule`, though never refused by a strict order.
    pub fn caution(mut self, rule: &'static str, message: impl Into<String>) -> Self {
        self.cautions.push((rule, message.into()));
        self
    }

    /// A store it talks to: shown on the live page with its health and latency.
    pub fn store(mut self, store: Backend) -> Self {
        self.stores.push(store);
        self
    }

    /// Writes out what it still holds, within the timeout; called by
    /// [`Stack::flush`](crate::Stack::flush) and the server's drain. Returns whether all of it
    /// was written.
    pub fn flush(mut self, flush: impl Fn(Duration) -> bool + Send + Sync + 'static) -> Self {
        self.flush = Some(Arc::new(flush));
        self
    }

    /// Registers its own series when the stack records into a metrics registry: called with
    /// the registry, the stack's name and the entry's name.
    #[cfg(feature = "prometheus")]
    pub fn metrics(
        mut self,
        register: impl Fn(&crate::metrics::Metrics, &str, &str) + Send + Sync + 'static,
    ) -> Self {
        self.metrics = Some(Arc::new(register));
        self
    }
}
