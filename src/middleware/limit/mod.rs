//! Limits: [`ConcurrencyLimit`] (requests inside at once) and [`BodyLimit`] (request body size).
//!
//! ```
//! use callnext::middleware::limit::{BodyLimit, ConcurrencyLimit};
//! use callnext::{Stack, TestClient};
//! use axum::{routing::post, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = Router::new().route("/", post(|body: String| async move { body.len().to_string() }));
//! let stack = Stack::new()
//!     .middleware(ConcurrencyLimit::new(1000).unwrap())
//!     .hook(BodyLimit::new(16).unwrap());
//! let client = TestClient::new(stack.service(app));
//! assert_eq!(client.post("/").body("small").await.text(), "5");
//! let res = client.post("/").body("far more than sixteen bytes").await;
//! assert_eq!(res.status(), 413);
//! assert_eq!(res.text(), r#"{"detail":"Request body too large"}"#);
//! # });
//! ```
//!
//! A queue in front of the limit, and a longer `Retry-After` for the requests shed past it:
//!
//! ```
//! use callnext::middleware::limit::ConcurrencyLimit;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//! use std::sync::Arc;
//! use tokio::sync::Notify;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let gate = Arc::new(Notify::new());
//! let inside = Arc::clone(&gate);
//! let app = Router::new().route("/", get(move || {
//!     let inside = Arc::clone(&inside);
//!     async move { inside.notified().await; "done" }
//! }));
//! let limit = ConcurrencyLimit::new(1).unwrap().queue(1).retry_after(10);
//! let client = TestClient::new(Stack::new().middleware(limit).service(app));
//! let first = tokio::spawn(client.get("/").send());
//! let second = tokio::spawn(client.get("/").send());
//! tokio::task::yield_now().await;
//! let third = client.get("/").await; // the one place and the one queue slot are taken
//! assert_eq!(third.status(), 503);
//! assert_eq!(third.header("retry-after"), Some("10"));
//! gate.notify_one();
//! assert_eq!(first.await.unwrap().text(), "done");
//! gate.notify_one();
//! assert_eq!(second.await.unwrap().text(), "done");
//! # });
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

mod body;
mod concurrency;

pub use body::BodyLimit;
pub use concurrency::ConcurrencyLimit;
