//! How a stack answers errors: debug bodies, and handlers of its own for `HttpError`s,
//! validation errors and panics (FastAPI's exception handlers): its settings.

use std::sync::Arc;

use super::Stack;

impl Stack {
    /// Debug mode: a panic's 500 shows its message, the entry it happened in and (with
    /// [`install_panic_location_hook`]) where, as Starlette's
    /// `ServerErrorMiddleware(debug=True)` does: an HTML page for a browser
    /// (`Accept: text/html`), plain text otherwise, and for a client that asks for JSON the
    /// JSON body with `"panic"`, `"entry"` and `"location"` beside `"detail"`. Never in
    /// production: it shows the server's internals to clients. Defaults to off.
    ///
    /// [`install_panic_location_hook`]: crate::install_panic_location_hook
    ///
    /// ```
    /// use callnext::{Stack, TestClient};
    /// use axum::{routing::get, Router};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let app = Router::new().route("/", get(|| async { panic!("boom"); #[allow(unreachable_code)] "" }));
    /// let client = TestClient::new(Stack::new().debug(true).service(app));
    /// assert!(client.get("/").await.text().contains("A panic in `app`"));
    /// let res = client.get("/").header("accept", "application/json").await;
    /// let body: serde_json::Value = res.json();
    /// assert_eq!(body["detail"], "Internal Server Error");
    /// assert_eq!(body["panic"], "boom");
    /// # });
    /// ```
    #[must_use]
    pub fn debug(mut self, on: bool) -> Self {
        self.settings.debug = on;
        self
    }

    /// Renders every `HttpError` raised inside the stack (by a handler, an extractor, a
    /// middleware, a hook, the router's 404/405) with `handler`, like FastAPI's
    /// `@app.exception_handler(HTTPException)`: an RFC 9457 problem document, a company-wide
    /// envelope. It runs where the error becomes a response, so every middleware outside that
    /// point sees the rendered answer; the `HttpError` stays in its extensions.
    ///
    /// ```
    /// use callnext::{HttpError, Stack, TestClient};
    /// use axum::response::IntoResponse;
    /// use axum::{routing::get, Router};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let stack = Stack::new().on_http_error(|err: &HttpError| {
    ///     let problem = serde_json::json!({
    ///         "type": "about:blank",
    ///         "status": err.status().as_u16(),
    ///         "title": err.status().canonical_reason(),
    ///         "detail": err.detail(),
    ///     });
    ///     let mut res = (err.status(), axum::Json(problem)).into_response();
    ///     res.headers_mut().insert("content-type", "application/problem+json".parse().unwrap());
    ///     res.headers_mut().extend(err.headers().clone());
    ///     res
    /// });
    /// let app = Router::new().route("/", get(|| async { Err::<(), _>(HttpError::not_found("no such item")) }));
    /// let res = TestClient::new(stack.service(app)).get("/").await;
    /// assert_eq!(res.status(), 404);
    /// assert_eq!(res.header("content-type"), Some("application/problem+json"));
    /// assert_eq!(res.json::<serde_json::Value>()["detail"], "no such item");
    /// # });
    /// ```
    #[must_use]
    pub fn on_http_error<F>(mut self, handler: F) -> Self
    where
        F: Fn(&crate::HttpError) -> crate::Response + Send + Sync + 'static,
    {
        self.settings.handlers.http = Some(Arc::new(handler));
        self
    }

    /// Renders every validation error (the 422s of callnext's extractors) with `handler`, like
    /// FastAPI's `@app.exception_handler(RequestValidationError)`; see
    /// [`Stack::on_http_error`].
    #[must_use]
    pub fn on_validation_error<F>(mut self, handler: F) -> Self
    where
        F: Fn(&crate::extract::ValidationError) -> crate::Response + Send + Sync + 'static,
    {
        self.settings.handlers.validation = Some(Arc::new(handler));
        self
    }

    /// Renders the 500 of every panic caught inside the stack with `handler` (the client
    /// never sees the panic's message unless the handler puts it there); see
    /// [`Stack::on_http_error`].
    #[must_use]
    pub fn on_panic<F>(mut self, handler: F) -> Self
    where
        F: Fn(&crate::Panicked) -> crate::Response + Send + Sync + 'static,
    {
        self.settings.handlers.panic = Some(Arc::new(handler));
        self
    }
}
