//! Exception handlers: how a stack renders the errors raised inside it, like FastAPI's
//! `@app.exception_handler(...)`.

use std::sync::Arc;

use crate::error::RenderedError;
use crate::extract::ValidationError;
use crate::{HttpError, Panicked, Response};

type Handler<T> = Arc<dyn Fn(&T) -> Response + Send + Sync>;

/// The handlers set on a stack.
#[derive(Clone, Default)]
pub(crate) struct Handlers {
    pub(crate) http: Option<Handler<HttpError>>,
    pub(crate) validation: Option<Handler<ValidationError>>,
    pub(crate) panic: Option<Handler<Panicked>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("http", &self.http.is_some())
            .field("validation", &self.validation.is_some())
            .field("panic", &self.panic.is_some())
            .finish()
    }
}

/// On a response an exception handler made: it is not rendered again further out.
#[derive(Debug, Clone, Copy)]
struct Handled;

impl Handlers {
    pub(crate) fn is_empty(&self) -> bool {
        self.http.is_none() && self.validation.is_none() && self.panic.is_none()
    }

    /// Renders `res` with the handler for what it carries, if it is an error callnext rendered
    /// and not handled yet. The error stays in the new response's extensions.
    pub(crate) fn apply(&self, res: &mut Response) {
        let extensions = res.extensions();
        if extensions.get::<RenderedError>().is_none() || extensions.get::<Handled>().is_some() {
            return;
        }
        let mut rendered = if let (Some(handler), Some(err)) =
            (&self.validation, extensions.get::<ValidationError>())
        {
            let mut out = handler(err);
            out.extensions_mut().insert(err.clone());
            out
        } else if let (Some(handler), Some(p)) = (&self.panic, extensions.get::<Panicked>()) {
            let mut out = handler(p);
            out.extensions_mut().insert(p.clone());
            out
        } else if let (Some(handler), Some(err)) = (&self.http, extensions.get::<HttpError>()) {
            let mut out = handler(err);
            out.extensions_mut().insert(err.clone());
            out
        } else {
            return;
        };
        rendered.extensions_mut().remove::<RenderedError>();
        rendered.extensions_mut().insert(Handled);
        *res = rendered;
    }
}
