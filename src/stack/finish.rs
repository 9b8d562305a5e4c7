//! What the stack does to every response before it leaves: no body where HTTP forbids one,
//! and the response's background tasks run once its body has been sent.

use std::sync::Arc;

use axum::body::Body;

use crate::Response;

/// Responses that must not have a body (RFC 9110: 1xx, 204, 304, and any answer to `HEAD`)
/// get none, whatever produced them (an `HttpError::new(204, ...)` included); 1xx and 204
/// lose their `Content-Length` too, a 304 or `HEAD` answer keeps the one it announced.
pub(super) fn without_forbidden_body(method: &http::Method, res: &mut Response) {
    let status = res.status();
    let bodiless = status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    if !bodiless && method != http::Method::HEAD {
        return;
    }
    let size = http_body::Body::size_hint(res.body()).exact();
    if !bodiless && !res.headers().contains_key(http::header::CONTENT_LENGTH) {
        // A HEAD answer announces the length the GET's body would have.
        if let Some(size) = size {
            res.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(size));
        }
    }
    if size != Some(0) {
        *res.body_mut() = Body::empty();
    }
    res.extensions_mut().remove::<crate::error::RenderedError>();
    if status.is_informational() || status == http::StatusCode::NO_CONTENT {
        res.headers_mut().remove(http::header::CONTENT_LENGTH);
        if res.headers().get(http::header::CONTENT_TYPE).is_some() {
            res.headers_mut().remove(http::header::CONTENT_TYPE);
        }
    }
}

/// Runs the response's background tasks once its body has been sent, or dropped.
pub(super) fn after_body(
    res: &Response,
    tasks: crate::BackgroundTasks,
    tracker: &Arc<crate::background::Tracker>,
    observers: &mut crate::battery::Chain,
) {
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let run = RunOnDrop(Some({
        let tracker = Arc::clone(tracker);
        move || crate::background::run(&tracker, tasks.take(), request_id)
    }));
    observers.observe(move |_| drop(run));
}

/// Calls its closure when dropped: when the response's observers are told, or dropped unused.
struct RunOnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for RunOnDrop<F> {
    fn drop(&mut self) {
        if let Some(run) = self.0.take() {
            run();
        }
    }
}

/// What a person reading a panic's 500 in debug mode gets, as Starlette's
/// `ServerErrorMiddleware(debug=True)` answers: HTML for a browser (`Accept: text/html`), plain
/// text otherwise (curl, a test client); a client that asks for JSON keeps the JSON body.
#[derive(Debug, Clone, Copy)]
pub(super) enum Page {
    Html,
    Json,
    Text,
}

impl Page {
    /// The page the request's `Accept` asks for.
    pub(super) fn wanted(headers: &http::HeaderMap) -> Self {
        let accept = headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/html") {
            Self::Html
        } else if accept.contains("application/json") {
            Self::Json
        } else {
            Self::Text
        }
    }

    /// The 500 of a panic, as this page; any other response as it is.
    #[cold]
    pub(super) fn debug(self, res: &mut Response) {
        let Some(panic) = res
            .extensions_mut()
            .remove::<crate::error::DebugPanicPage>()
        else {
            return;
        };
        let location = panic.location.as_deref().unwrap_or("an unknown place");
        let (body, content_type) = match self {
            Self::Json => return,
            Self::Html => {
                let escape = crate::admin::live::http::html_escape;
                let html = format!(
                    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>500 Server Error</title></head>\n\
                     <body><h1>500 Server Error</h1>\n<p>A panic in <code>{}</code> at <code>{}</code>:</p>\n\
                     <pre>{}</pre>\n<p>Debug mode: never in production.</p></body></html>\n",
                    escape(&panic.entry),
                    escape(location),
                    escape(&panic.message),
                );
                (html, "text/html; charset=utf-8")
            }
            Self::Text => {
                let text = format!(
                    "500 Server Error\n\nA panic in `{}` at {location}:\n{}\n",
                    panic.entry, panic.message
                );
                (text, "text/plain; charset=utf-8")
            }
        };
        let headers = res.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        *res.body_mut() = Body::from(body);
    }
}
