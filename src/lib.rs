//! FastAPI-style async middleware for Rust.
//!
//! Write middleware as an `async fn(Request, Next)` or as a struct with options, put it in one
//! ordered [`Stack`] that can print itself, and serve it on tokio and hyper. Routing, extractors
//! and handlers are axum's.
//!
//! ```
//! use callnext::{HttpError, Middleware, Next, Request, Response, Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! // A function middleware, like `@app.middleware("http")`.
//! async fn add_header(req: Request, next: Next<'_>) -> Response {
//!     let mut res = next.run(req).await;
//!     res.headers_mut().insert("x-custom", "hello".parse().unwrap());
//!     res
//! }
//!
//! // A struct middleware with an option, like a class with `__call__`.
//! struct RequireHeader {
//!     name: &'static str,
//! }
//!
//! impl Middleware for RequireHeader {
//!     async fn call(&self, req: Request, next: Next<'_>) -> Response {
//!         if !req.headers().contains_key(self.name) {
//!             return axum::response::IntoResponse::into_response(
//!                 HttpError::bad_request(format!("missing {}", self.name)),
//!             );
//!         }
//!         next.run(req).await
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = Router::new().route("/", get(|| async { "Hello World" }));
//! // Registration order is execution order: `add_header` sees the request first.
//! let stack = Stack::new()
//!     .func(add_header)
//!     .middleware(RequireHeader { name: "x-token" });
//!
//! let client = TestClient::new(stack.service(app));
//! let res = client.get("/").await;
//! // The error became a response where it was raised, and `add_header` still decorated it.
//! assert_eq!(res.status(), 400);
//! assert_eq!(res.header("x-custom"), Some("hello"));
//! assert_eq!(res.text(), r#"{"detail":"missing x-token"}"#);
//! # });
//! ```

pub mod body;
mod error;
pub mod extract;
pub mod instrument;
pub mod metrics;
mod middleware;
mod next;
pub mod seed;
pub mod serve;
mod service;
mod stack;
mod test_client;

pub use error::{ConfigError, HttpError};
pub use instrument::BlockingReport;
pub use middleware::{Middleware, MiddlewareFn, MiddlewareFnWithState, NextService};
pub use next::Next;
pub use service::{ResponseFuture, StackService};
pub use stack::{Entry, EntryInfo, MiddlewareKind, Stack};
pub use test_client::{TestClient, TestResponse};

/// The request every middleware and handler sees (axum's).
pub type Request<B = axum::body::Body> = http::Request<B>;

/// The response every middleware and handler produces (axum's).
pub type Response<B = axum::body::Body> = http::Response<B>;

pub use axum::body::Body;
