//! FastAPI-style async middleware for Rust.
//!
//! Write middleware as an `async fn(Request, Next)`, as a struct with options, or as a
//! [`Hook`] that works before and after the rest of the stack; put them in one ordered
//! [`Stack`] that can print itself, and serve it on tokio and hyper. Routing, extractors and
//! handlers are axum's.
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
//! // A struct middleware with an option, like a class with `__call__`; `?` and `Err` work.
//! struct RequireHeader {
//!     name: &'static str,
//! }
//!
//! impl Middleware<Result<Response, HttpError>> for RequireHeader {
//!     async fn call(&self, req: Request, next: Next<'_>) -> Result<Response, HttpError> {
//!         if !req.headers().contains_key(self.name) {
//!             return Err(HttpError::bad_request(format!("missing {}", self.name)));
//!         }
//!         Ok(next.run(req).await)
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
//! assert_eq!(client.get("/").header("x-token", "t").await.text(), "Hello World");
//! # });
//! ```
//!
//! | coming from | callnext |
//! |---|---|
//! | FastAPI `@app.middleware("http")` | [`Stack::func`] with an `async fn(Request, Next)` |
//! | a middleware class with options | [`Stack::middleware`] with an `impl` [`Middleware`] |
//! | `request.state.x = ...` | `req.extensions_mut().insert(x)`, read with axum's `Extension<X>` |
//! | `raise HTTPException(...)` | `Err(HttpError::...)` |
//! | Starlette's `TestClient` | [`TestClient`] |
//! | axum `map_request` / `map_response` | [`Stack::on_request`], [`Stack::on_response`], [`Hook`] |
//! | axum `Router::layer(tower_layer)` | [`Stack::layer`] (or put the whole stack in `Router::layer`) |
//!
//! The README has the whole picture: serving, state, errors, the blocking detector, metrics.

// On docs.rs (every feature, nightly), each feature-gated item is marked with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Links to feature-gated items are checked in the build with every feature (CI's, docs.rs's);
// with fewer features they may point at nothing, which is no error there.
#![cfg_attr(
    not(all(
        feature = "server",
        feature = "prometheus",
        feature = "config",
        feature = "compression",
        feature = "tls",
        feature = "validator",
        feature = "sql",
        feature = "redis",
        feature = "jwt",
        feature = "external-auth",
        feature = "log-shipping",
        feature = "otel"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod admin;
pub mod backends;
mod background;
pub mod battery;
pub mod body;
#[cfg(feature = "config")]
mod builtin;
mod client_ip;
mod clock;
#[cfg(feature = "config")]
pub mod config;
mod error;
pub mod extract;
#[cfg(feature = "http-client")]
mod http_client;
mod identity;
pub mod instrument;
#[cfg(feature = "prometheus")]
pub mod metrics;
pub mod middleware;
mod printable;
mod redact;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "sql")]
mod sql;
mod stack;
#[cfg(feature = "otel")]
pub mod telemetry;
mod test_client;

pub use background::{Background, BackgroundTasks};
pub use client_ip::{ClientIp, ForwardedHeader, Secure, TrustedProxies};
pub use error::{install_panic_location_hook, ConfigError, ConfigErrorKind, HttpError, Panicked};
pub use identity::{ApiKeyId, RequestId, UserId};
pub use instrument::BlockingReport;
pub use printable::{Printable, MAX_LOGGED_BYTES};
pub use stack::{
    AnsweredBy, Entry, EntryInfo, Flow, Hook, HookOutcome, HttpService, Middleware, MiddlewareFn,
    MiddlewareFnWithState, MiddlewareKind, Next, NextService, OrderWarning, ResponseBody,
    ResponseFuture, Stack, StackService, Waiting,
};
pub use test_client::{TestClient, TestRequest, TestResponse, TestStream};

/// The request every middleware and handler sees (axum's).
pub type Request<B = axum::body::Body> = http::Request<B>;

/// The response every middleware and handler produces (axum's).
pub type Response<B = axum::body::Body> = http::Response<B>;

pub use axum::body::Body;

// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
