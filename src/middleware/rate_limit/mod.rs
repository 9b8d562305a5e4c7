//! [`RateLimit`]: GCRA rate limiting, in memory or across instances through Redis.
//!
//! A policy such as `"100/minute"` lets a caller send `burst` requests at once (by default the
//! whole quota) and then one more every `window / quota`. Several policies on one limiter
//! (`10/second` and `1000/hour`) are decided together: a request takes quota from all of
//! them or from none. Over the limit the answer is `429 {"detail":"Too Many Requests"}` with
//! `Retry-After` (whole seconds, at least 1); every limited response, allowed or not, carries
//! the IETF draft's `RateLimit-Policy` and `RateLimit` headers (or the older forms, or none)
//! for the policy with the lowest remaining.
//!
//! - **Callers** are keyed by [`ClientIp`] by default (IPv6 grouped by its /64), so with no
//!   trusted proxy a forged `X-Forwarded-For` changes nothing; or by the [`ApiKeyId`] or
//!   [`UserId`] an earlier middleware put on the request, a request header, or a function.
//!   A request without the key (or with one over 128 bytes) is keyed by its address.
//! - **Stores**: memory (bounded: at most `max_keys` callers, entries dropped once their bucket
//!   is full again, no task per key) or Redis (feature `redis`): a Lua script, atomic over every
//!   policy, on Redis's own clock (`TIME`), so instances whose clocks differ still agree; the
//!   checks of requests that arrive while a call is at Redis share the next call; keys of one
//!   caller share a hash tag for Redis Cluster.
//! - **When the store fails** (no answer within `store_timeout`, 50 ms by default), the
//!   request is allowed (`open`, the default), refused with 503 (`closed`), or decided by a
//!   memory store (`local`). After three failures in a row a circuit breaker stops asking for
//!   half a second at a time, so an outage does not add the timeout to every request; each
//!   change of state is logged once.
//! - `OPTIONS` preflights are not counted unless asked; `paths` scopes a limiter to path
//!   prefixes; shadow mode decides and records without refusing or adding headers.
//! - Metrics, once the stack records into a registry: `callnext_rate_limit_requests_total`
//!   (`policy`, `decision` = `allowed`, `limited` or `shadow_limited`),
//!   `callnext_rate_limit_store_errors_total` (`action` = `open`, `closed`, `local`) and the
//!   store's latency, `callnext_rate_limit_store_seconds`.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), callnext::ConfigError> {
//! use axum::{routing::get, Router};
//! use callnext::middleware::RateLimit;
//! use callnext::{Stack, TestClient};
//!
//! let limit = RateLimit::builder().limit("2/minute").build()?;
//! let app = Router::new().route("/", get(|| async { "hi" }));
//! let client = TestClient::new(Stack::new().hook(limit).service(app));
//!
//! let first = client.get("/").await;
//! assert_eq!(first.header("ratelimit-policy"), Some("\"2-in-1m\";q=2;w=60"));
//! assert_eq!(first.header("ratelimit"), Some("\"2-in-1m\";r=1;t=30"));
//! client.get("/").await;
//! let refused = client.get("/").await;
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.header("retry-after"), Some("30"));
//! assert_eq!(refused.text(), r#"{"detail":"Too Many Requests"}"#);
//! # Ok(()) }
//! ```
//!
//! Customised: per API key, two policies, costs, the older headers, scoped to `/api`:
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), callnext::ConfigError> {
//! use callnext::middleware::rate_limit::{Headers, KeyBy, RateLimit};
//! use callnext::{ApiKeyId, Stack, TestClient};
//!
//! let limit = RateLimit::builder()
//!     .limit("10/second")
//!     .burst(20)
//!     .limit("1000/hour")
//!     .key(KeyBy::ApiKey)
//!     .cost(|req: &callnext::Request| if req.method() == "POST" { 5 } else { 1 })
//!     .headers(Headers::Legacy)
//!     .paths(["/api"])
//!     .build()?;
//! let app = axum::Router::new().route("/api/items", axum::routing::post(|| async { "made" }));
//! let stack = Stack::new()
//!     .on_request("auth", |req: &mut callnext::Request| {
//!         req.extensions_mut().insert(ApiKeyId::new("key-1"));
//!     })
//!     .hook(limit);
//! let client = TestClient::new(stack.service(app));
//! let res = client.post("/api/items").send().await;
//! assert_eq!(res.header("ratelimit-limit"), Some("10"));
//! assert_eq!(res.header("ratelimit-remaining"), Some("15"));
//! assert_eq!(res.header("ratelimit-policy"), Some("10;w=1, 1000;w=3600"));
//! # Ok(()) }
//! ```
//!
//! [`ClientIp`]: crate::ClientIp
//! [`ApiKeyId`]: crate::ApiKeyId
//! [`UserId`]: crate::UserId
//! [`ClientIp`]: crate::ClientIp

#[cfg(feature = "config")]
pub(crate) mod config;

mod builder;
pub mod gcra;
mod hook;
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "prometheus")]
mod series;

use std::net::IpAddr;
#[cfg(feature = "redis")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use http::{HeaderName, HeaderValue, StatusCode};

pub use self::builder::RateLimitBuilder;
use self::gcra::{Decision, Rate, MAX_POLICIES};
use self::memory::MemoryStore;
pub use self::policy::Headers;
use self::policy::{Policy, Rendered};
#[cfg(feature = "prometheus")]
use self::series::LimiterMetrics;
use crate::battery::{Caller, CallerRule};
use crate::{ConfigError, Flow, Hook, HttpError, Request, Response};

pub use crate::battery::{KeyBy, KeyFn};

/// What a request gets when the store cannot decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Let it through (the default, as Envoy's rate-limit filter does).
    #[default]
    Open,
    /// Refuse it: `503 {"detail":"Service Unavailable"}` with `Retry-After: 1`.
    Closed,
    /// Decide in this instance's memory until the store answers again.
    Local,
}

impl OnStoreError {
    /// Its place in the per-action error counters: open, closed, local.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    const fn slot(self) -> usize {
        match self {
            Self::Open => 0,
            Self::Closed => 1,
            Self::Local => 2,
        }
    }
}

type CostFn = Arc<dyn Fn(&Request) -> u64 + Send + Sync>;

enum Store {
    Memory(MemoryStore),
    #[cfg(feature = "redis")]
    Redis {
        store: Box<self::redis::RedisStore>,
        local: Option<MemoryStore>,
    },
}

struct Shared {
    policies: Vec<Policy>,
    rates: Vec<Rate>,
    rendered: Rendered,
    callers: CallerRule,
    cost: Option<CostFn>,
    fixed_cost: u64,
    paths: crate::battery::PathRules,
    count_preflights: bool,
    /// Count only responses with these statuses (empty: count every request).
    count_statuses: Vec<StatusCode>,
    headers: Headers,
    shadow: bool,
    store: Store,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    on_store_error: OnStoreError,
    /// Requests the store failed to decide, by the action taken (see [`OnStoreError::slot`]);
    /// counted whether or not metrics are recorded, for the live page.
    #[cfg(feature = "redis")]
    store_errors: [AtomicU64; 3],
    name: String,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    prefix: String,
    #[cfg(feature = "prometheus")]
    metrics: std::sync::OnceLock<LimiterMetrics>,
}

/// Limits request rates; see the [module docs](self). Made by [`RateLimit::builder`].
#[derive(Clone)]
pub struct RateLimit {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("name", &self.shared.name)
            .field(
                "policies",
                &self
                    .shared
                    .policies
                    .iter()
                    .map(|p| &p.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What the response side needs: the decision, when one was made, and the charge to give back
/// when only some statuses count.
#[derive(Debug)]
pub struct Decided(Option<Decision>, Option<Charge>);

/// A charge taken up front from a limiter that counts only some statuses: given back when the
/// answer's status is not one of them.
#[derive(Debug)]
pub(crate) struct Charge {
    caller: Caller,
    /// The caller's keys in Redis, when Redis took the charge.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    keys: Option<Vec<String>>,
    cost: u64,
    /// Taken from the `local` fallback's memory, not from Redis.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    local: bool,
}

impl RateLimit {
    /// A builder with no policy yet.
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder::default()
    }

    /// The names of the headers it writes, for CORS to expose.
    pub fn header_names(&self) -> Vec<HeaderName> {
        self.shared
            .headers
            .names()
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect()
    }

    /// Callers the memory store holds now (the `local` fallback's for a Redis store).
    pub fn memory_keys(&self) -> usize {
        match &self.shared.store {
            Store::Memory(memory) => memory.len(),
            #[cfg(feature = "redis")]
            Store::Redis { local, .. } => local.as_ref().map_or(0, MemoryStore::len),
        }
    }

    /// Decides (and takes `cost` from) the client at `ip` in the memory store, as the hook
    /// would for a request from it (IPv6 grouped by its prefix); `None` when this limiter
    /// decides in Redis. For limits outside HTTP requests, such as messages on a WebSocket.
    ///
    /// ```
    /// use callnext::middleware::RateLimit;
    ///
    /// let limit = RateLimit::builder().limit("2/minute").build().unwrap();
    /// let ip = "192.0.2.7".parse().unwrap();
    /// assert!(limit.check_ip(ip, 2).unwrap().allowed);
    /// let refused = limit.check_ip(ip, 1).unwrap();
    /// assert!(!refused.allowed);
    /// assert_eq!(refused.retry_us().div_ceil(1_000_000), 30); // in whole seconds
    /// ```
    pub fn check_ip(&self, ip: IpAddr, cost: u64) -> Option<Decision> {
        match &self.shared.store {
            Store::Memory(memory) => {
                Some(memory.check(&self.shared.callers.ip(ip), &self.shared.rates, cost))
            }
            #[cfg(feature = "redis")]
            Store::Redis { .. } => None,
        }
    }

    /// Callers the memory store forgot before their bucket was full again, to stay within
    /// `max_keys` (a flood of distinct callers).
    pub fn memory_evicted(&self) -> u64 {
        match &self.shared.store {
            Store::Memory(memory) => memory.evicted(),
            #[cfg(feature = "redis")]
            Store::Redis { local, .. } => local.as_ref().map_or(0, MemoryStore::evicted),
        }
    }

    /// The store it decides with, for the live page: none in memory; a Redis with the
    /// requests `on_store_error` decided (`store_errors_open`, `_closed`, `_local`) and
    /// whether the circuit breaker is open (`breaker_open`, 1 when it is).
    #[cfg(feature = "redis")]
    pub(crate) fn backends(&self) -> Vec<crate::backends::Backend> {
        let Store::Redis { store, .. } = &self.shared.store else {
            return Vec::new();
        };
        let limit = self.clone();
        let counters = Arc::new(move || limit.counters());
        vec![crate::backends::Backend::redis(store.redis(), counters)]
    }

    /// No store but memory without the `redis` feature.
    #[cfg(not(feature = "redis"))]
    pub(crate) fn backends(&self) -> Vec<crate::backends::Backend> {
        Vec::new()
    }

    /// The failure-policy counters [`backends`](Self::backends) reports.
    #[cfg(feature = "redis")]
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let shared = &self.shared;
        let errors =
            |action: OnStoreError| shared.store_errors[action.slot()].load(Ordering::Relaxed);
        let breaker = match &shared.store {
            Store::Redis { store, .. } => u64::from(store.breaker_open()),
            Store::Memory(_) => 0,
        };
        vec![
            ("store_errors_open", errors(OnStoreError::Open)),
            ("store_errors_closed", errors(OnStoreError::Closed)),
            ("store_errors_local", errors(OnStoreError::Local)),
            ("breaker_open", breaker),
        ]
    }

    /// Whether callers are keyed by an identity auth gives (user or API key).
    pub(crate) fn keyed_by_identity(&self) -> bool {
        self.shared.callers.by_identity()
    }
}
