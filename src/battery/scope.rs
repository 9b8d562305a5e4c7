//! [`StoreScope`]: the namespace a [`TestClient`](crate::TestClient) gives the keys its
//! requests leave in shared stores, so tests (and runs of one test) sharing a Redis do not see
//! each other's counters.

use std::sync::Arc;

use crate::Request;

/// The scope of a request's keys in a shared store: set on each request by a
/// [`TestClient`](crate::TestClient) (a random one per client unless it is told otherwise),
/// never by a server. A battery whose keys in a shared store follow from the request alone
/// (the rate limiter's per-caller buckets) puts it in front of them; one whose keys are random
/// (session ids) needs not.
///
/// ```
/// use callnext::battery::StoreScope;
/// use callnext::{Request, Response, Stack, TestClient};
/// use axum::{routing::get, Router};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = Router::new().route("/", get(|req: Request| async move {
///     StoreScope::of(&req).unwrap_or("none").to_owned()
/// }));
/// let client = TestClient::new(Stack::new().service(app.clone()));
/// let other = TestClient::new(Stack::new().service(app.clone()));
/// assert_ne!(client.get("/").await.text(), other.get("/").await.text());
///
/// let named = TestClient::new(Stack::new().service(app.clone())).store_scope("run-1");
/// assert_eq!(named.get("/").await.text(), "run-1");
/// let shared = TestClient::new(Stack::new().service(app)).shared_store_keys();
/// assert_eq!(shared.get("/").await.text(), "none");
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreScope(Arc<str>);

impl StoreScope {
    /// A scope named `name`.
    pub(crate) fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// A scope no other client, test or run has: 16 random hex digits.
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 8];
        // Without the system's randomness, the process id and the time still differ per run.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            bytes[..4].copy_from_slice(&std::process::id().to_le_bytes());
            bytes[4..].copy_from_slice(&nanos.to_le_bytes());
        }
        Self::new(format!("t{:016x}", u64::from_le_bytes(bytes)))
    }

    /// The scope of `req`'s keys, if it has one.
    pub fn of(req: &Request) -> Option<&str> {
        req.extensions().get::<Self>().map(|scope| &*scope.0)
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
