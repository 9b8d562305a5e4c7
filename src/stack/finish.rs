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
