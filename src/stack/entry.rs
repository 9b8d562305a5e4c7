//! [`Entry`]: one named middleware of any kind, ready to go into a [`Stack`](crate::Stack).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::response::IntoResponse;
use tower::Layer;

use super::chain::DynEntry;
use super::hook::{DynHook, Hook, HookAdapter, HookOutcome, RequestFn, ResponseFn};
use super::middleware::{
    FnEntry, FnWithStateEntry, Middleware, MiddlewareFn, MiddlewareFnWithState, StructEntry,
};
use super::tower::{BuildTower, NextService, TowerDef};
use super::HttpService;
use crate::battery::Capabilities;
use crate::instrument::BlockingStats;
use crate::{Request, Response};

/// What kind of middleware an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MiddlewareKind {
    /// An `async fn(Request, Next)`.
    Function,
    /// A struct implementing [`Middleware`].
    Struct,
    /// A [`Hook`]: work before and after the rest of the stack.
    Hook,
    /// A tower [`Layer`].
    Tower,
}

impl fmt::Display for MiddlewareKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Function => "function",
            Self::Struct => "struct",
            Self::Hook => "hook",
            Self::Tower => "tower",
        })
    }
}

/// How an entry runs.
#[derive(Clone)]
pub(crate) enum EntryDef {
    /// Functions and structs: the same object in every service built from the stack.
    Around(Arc<dyn DynEntry>),
    Hook(Arc<dyn DynHook>),
    /// Built into a service once per stack service.
    Tower(Arc<dyn BuildTower>),
}

/// One middleware, named, ready to go into a [`Stack`](crate::Stack).
///
/// Build one with [`Entry::func`], [`Entry::func_with_state`], [`Entry::middleware`],
/// [`Entry::hook`] or [`Entry::layer`], rename it with [`Entry::named`], then
/// [`Stack::push`](crate::Stack::push) it or insert it by name; [`Stack`](crate::Stack) has
/// shortcuts that build and append in one call.
///
/// ```
/// use callnext::{Entry, Next, Request, Response, Stack};
///
/// async fn audit(req: Request, next: Next<'_>) -> Response {
///     next.run(req).await
/// }
///
/// let stack = Stack::new()
///     .push(Entry::func(audit).named("audit_v2"))
///     .insert_before("audit_v2", Entry::func(audit))
///     .unwrap();
/// assert_eq!(stack.to_string(), "0 audit (function)\n1 audit_v2 (function)\n");
/// ```
#[derive(Clone)]
pub struct Entry {
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: MiddlewareKind,
    pub(crate) def: EntryDef,
    /// Blocking events since the stack was built, shared by every service built from it.
    pub(crate) stats: Arc<BlockingStats>,
    /// What it offers the rest of the system (its kind and place in the order, stores, a
    /// flush, metrics).
    pub(crate) caps: Capabilities,
    /// Its settings as `key=value`, secrets redacted, for the live page (entries built from a
    /// configuration file).
    pub(crate) settings: Option<Arc<[String]>>,
}

impl Entry {
    fn new(name: Cow<'static, str>, kind: MiddlewareKind, def: EntryDef) -> Self {
        Self {
            name,
            kind,
            def,
            stats: Arc::default(),
            caps: Capabilities::new(),
            settings: None,
        }
    }

    /// Gives the entry what it offers the rest of the system (replacing what it offered
    /// before): its kind and place in the order for the linter, its stores for the live page, a
    /// flush at shutdown, its metrics. The name stays as it is.
    ///
    /// Hooks and struct middlewares offer theirs from their own `capabilities` method (and are
    /// named after their [kind](Capabilities::kind) if they give one); this is for functions
    /// and tower layers, or to override.
    #[must_use]
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// With the capabilities its type offers, named after its kind if it has one.
    fn offering(mut self, caps: Capabilities) -> Self {
        if let Some(kind) = caps.kind {
            self.name = Cow::Borrowed(kind);
        }
        self.with_capabilities(caps)
    }

    /// What the entry offers the rest of the system.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// A function middleware: `async fn(Request, Next) -> impl IntoResponse`.
    ///
    /// Named after the function (`timing` for `my_crate::timing`); see [`Entry::named`].
    #[must_use]
    pub fn func<F>(f: F) -> Self
    where
        F: for<'a> MiddlewareFn<'a>,
    {
        let name = Cow::Borrowed(short_type_name::<F>());
        Self::new(
            name,
            MiddlewareKind::Function,
            EntryDef::Around(Arc::new(FnEntry(f))),
        )
    }

    /// A function middleware that borrows shared state:
    /// `async fn(&S, Request, Next) -> impl IntoResponse`.
    #[must_use]
    pub fn func_with_state<F, S>(state: S, f: F) -> Self
    where
        S: Send + Sync + 'static,
        F: for<'a> MiddlewareFnWithState<'a, S>,
    {
        let name = Cow::Borrowed(short_type_name::<F>());
        Self::new(
            name,
            MiddlewareKind::Function,
            EntryDef::Around(Arc::new(FnWithStateEntry { f, state })),
        )
    }

    /// A struct middleware. Named after its type (`Auth` for `my_crate::Auth`; callnext's
    /// batteries after their kind, `timeout` for [`Timeout`](crate::middleware::Timeout)).
    #[must_use]
    pub fn middleware<M, R>(m: M) -> Self
    where
        M: Middleware<R>,
        R: IntoResponse + 'static,
    {
        let name = Cow::Borrowed(short_type_name::<M>());
        let caps = m.capabilities();
        Self::new(
            name,
            MiddlewareKind::Struct,
            EntryDef::Around(Arc::new(StructEntry(m, PhantomData))),
        )
        .offering(caps)
    }

    /// A hook. Named after its type (`ApiKey` for `my_crate::ApiKey`; callnext's batteries
    /// after their kind, `request_id` for [`SetRequestId`](crate::middleware::SetRequestId)).
    #[must_use]
    pub fn hook<H: Hook>(hook: H) -> Self {
        let name = Cow::Borrowed(short_type_name::<H>());
        let caps = hook.capabilities();
        Self::new(
            name,
            MiddlewareKind::Hook,
            EntryDef::Hook(Arc::new(HookAdapter(hook))),
        )
        .offering(caps)
    }

    /// A synchronous hook on the request, from a closure, under `name`: return `()` to go on,
    /// or a `Result<(), E>` whose `Err(e)` answers with `e` (an [`HttpError`](crate::HttpError),
    /// say).
    #[must_use]
    pub fn on_request<F, R>(name: impl Into<Cow<'static, str>>, f: F) -> Self
    where
        F: Fn(&mut Request) -> R + Send + Sync + 'static,
        R: HookOutcome,
    {
        Self::hook(RequestFn(f)).named(name)
    }

    /// A synchronous hook on the response, from a closure, under `name`: return `()`, or a
    /// `Result<(), E>` whose `Err(e)` replaces the response with `e`.
    #[must_use]
    pub fn on_response<F, R>(name: impl Into<Cow<'static, str>>, f: F) -> Self
    where
        F: Fn(&mut Response) -> R + Send + Sync + 'static,
        R: HookOutcome,
    {
        Self::hook(ResponseFn(f)).named(name)
    }

    /// A tower layer, under `name`. Its service is built once per stack service around the
    /// rest of the stack, and cloned per request (as axum does); its errors become responses
    /// (`tower::timeout`'s a 504, `tower::load_shed`'s a 503, any other a 500).
    ///
    /// A layer whose state lives in each clone of its service, rather than shared between
    /// clones, needs a `tower::buffer::BufferLayer` in front of it, as in axum: tower's
    /// `RateLimitLayer` is one. `ConcurrencyLimitLayer` and tower-http's layers share their
    /// state and work as they are.
    #[must_use]
    pub fn layer<L>(name: impl Into<Cow<'static, str>>, layer: L) -> Self
    where
        L: Layer<NextService> + Send + Sync + 'static,
        L::Service: HttpService,
    {
        Self::new(
            name.into(),
            MiddlewareKind::Tower,
            EntryDef::Tower(Arc::new(TowerDef { layer })),
        )
    }

    /// Renames the entry: the name shows in [`Stack::describe`](crate::Stack::describe), logs
    /// and metrics, and is what [`Stack::insert_before`](crate::Stack::insert_before) and
    /// [`Stack::insert_after`](crate::Stack::insert_after) look up. Names are unique in a stack.
    #[must_use]
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entry's kind.
    pub fn kind(&self) -> MiddlewareKind {
        self.kind
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

/// The last path segment of a type's name, without generics: `timing` for `app::timing`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// How one entry of a stack describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// Position: 0 runs first on the request, last on the response.
    pub index: usize,
    /// The entry's name.
    pub name: String,
    /// The entry's kind.
    pub kind: MiddlewareKind,
}
