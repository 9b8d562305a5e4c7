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
//!   is full again, no task per key) or Redis (feature `redis`): one Lua script per request,
//!   atomic over every policy, on Redis's own clock (`TIME`), so instances whose clocks differ
//!   still agree; keys of one caller share a hash tag for Redis Cluster.
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

pub mod gcra;
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;

use std::net::IpAddr;
#[cfg(feature = "redis")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use http::{HeaderName, HeaderValue, StatusCode};

use self::gcra::{Decision, Rate, MAX_POLICIES};
use self::memory::MemoryStore;
pub use self::policy::Headers;
use self::policy::{Policy, Rendered};
use crate::{ApiKeyId, ClientIp, ConfigError, Flow, Hook, HttpError, Request, Response, UserId};

/// The longest caller key kept as it is; a longer one falls back to the client address.
const MAX_KEY_LEN: usize = 128;

/// Who a request counts against.
#[derive(Clone)]
#[non_exhaustive]
pub enum KeyBy {
    /// The client address ([`ClientIp`]), IPv6 grouped by its prefix (the
    /// default).
    Ip,
    /// The [`ApiKeyId`] an earlier middleware put on the request.
    ApiKey,
    /// The [`UserId`] an earlier middleware put on the request.
    User,
    /// A request header's value.
    Header(HeaderName),
    /// A function of the request; `None` keys it by address.
    Fn(KeyFn),
}

/// A function that keys a request (see [`KeyBy::Fn`]).
pub type KeyFn = Arc<dyn Fn(&Request) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip => f.write_str("Ip"),
            Self::ApiKey => f.write_str("ApiKey"),
            Self::User => f.write_str("User"),
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

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

/// A caller, as the stores key it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// An address as 128 bits (IPv4 in its IPv6-mapped form), masked to its group.
    Ip(u128),
    /// A key of the application's, tagged with its kind (`k:`, `u:`, `h:`, `f:`).
    Text(Box<str>),
}

impl Caller {
    /// The caller in a Redis key: an address as text, anything else hex-encoded (so no
    /// brace can end the hash tag early).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn redis_part(&self) -> String {
        match self {
            Self::Ip(bits) => {
                let v6 = std::net::Ipv6Addr::from(*bits);
                match v6.to_ipv4_mapped() {
                    Some(v4) => v4.to_string(),
                    None => v6.to_string(),
                }
            }
            Self::Text(text) => {
                let (kind, rest) = text.split_at(2);
                let mut out = String::with_capacity(2 + rest.len() * 2);
                out.push_str(kind);
                for b in rest.bytes() {
                    out.push_str(&format!("{b:02x}"));
                }
                out
            }
        }
    }
}

type CostFn = Arc<dyn Fn(&Request) -> u64 + Send + Sync>;

/// The settings of a [`RateLimit`], checked by [`RateLimitBuilder::build`].
#[must_use]
pub struct RateLimitBuilder {
    limits: Vec<(String, Option<u64>, Option<String>)>,
    key: KeyBy,
    ipv6_prefix: u8,
    cost: Option<CostFn>,
    fixed_cost: u64,
    paths: Vec<String>,
    count_preflights: bool,
    headers: Headers,
    shadow: bool,
    max_keys: usize,
    on_store_error: OnStoreError,
    store_timeout: Duration,
    name: String,
    prefix: Option<String>,
    count_statuses: Vec<u16>,
    #[cfg(feature = "redis")]
    redis: Option<crate::backends::Redis>,
}

impl std::fmt::Debug for RateLimitBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("limits", &self.limits)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Default for RateLimitBuilder {
    fn default() -> Self {
        Self {
            limits: Vec::new(),
            key: KeyBy::Ip,
            ipv6_prefix: 64,
            cost: None,
            fixed_cost: 1,
            paths: Vec::new(),
            count_preflights: false,
            headers: Headers::Draft,
            shadow: false,
            max_keys: 100_000,
            on_store_error: OnStoreError::Open,
            store_timeout: Duration::from_millis(50),
            name: "rate_limit".to_owned(),
            prefix: None,
            count_statuses: Vec::new(),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl RateLimitBuilder {
    /// Adds a policy: `"100/minute"`, `"10/s"`, `"5/30s"`, `"1000/1h"` (at most four per
    /// limiter). Its burst is the whole quota unless [`burst`](Self::burst) follows.
    pub fn limit(mut self, limit: impl Into<String>) -> Self {
        self.limits.push((limit.into(), None, None));
        self
    }

    /// The burst of the policy added last: requests that may arrive at once (at least 1).
    pub fn burst(mut self, burst: u64) -> Self {
        if let Some(last) = self.limits.last_mut() {
            last.1 = Some(burst);
        }
        self
    }

    /// The name of the policy added last, in the headers (letters, digits, `-`, `_`, `.`).
    /// Defaults to `<quota>-in-<window>`, such as `100-in-1m`.
    pub fn policy_name(mut self, name: impl Into<String>) -> Self {
        if let Some(last) = self.limits.last_mut() {
            last.2 = Some(name.into());
        }
        self
    }

    /// Who a request counts against. Defaults to [`KeyBy::Ip`].
    pub fn key(mut self, key: KeyBy) -> Self {
        self.key = key;
        self
    }

    /// IPv6 clients are grouped by this prefix length (a host usually has a whole /64).
    /// Defaults to 64.
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits;
        self
    }

    /// What a request costs, from the request (a weight; 0 only reads the state). Defaults to
    /// 1 for every request.
    pub fn cost(mut self, cost: impl Fn(&Request) -> u64 + Send + Sync + 'static) -> Self {
        self.cost = Some(Arc::new(cost));
        self
    }

    /// The same cost for every request. Defaults to 1.
    pub fn fixed_cost(mut self, cost: u64) -> Self {
        self.fixed_cost = cost;
        self.cost = None;
        self
    }

    /// Only requests under these path prefixes are limited (`/api` covers `/api` and
    /// `/api/items`, not `/apis`). Empty, the default: every path.
    pub fn paths<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, prefixes: I) -> Self {
        self.paths = prefixes
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        self
    }

    /// Counts only the responses with these statuses (`[401, 403]`: failed
    /// authentications), once they are answered; a caller out of quota is refused before its
    /// request runs. Put the limiter outside (before) the middleware whose answers it counts.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), callnext::ConfigError> {
    /// use callnext::middleware::RateLimit;
    /// use callnext::{HttpError, Stack, TestClient};
    ///
    /// let failures = RateLimit::builder().limit("2/minute").count_statuses([401]).build()?;
    /// let app = axum::Router::new().route(
    ///     "/",
    ///     axum::routing::get(|| async { Err::<(), _>(HttpError::unauthorized("who?")) }),
    /// );
    /// let client = TestClient::new(Stack::new().hook(failures).service(app));
    /// assert_eq!(client.get("/").await.status(), 401);
    /// assert_eq!(client.get("/").await.status(), 401);
    /// assert_eq!(client.get("/").await.status(), 429);
    /// # Ok(()) }
    /// ```
    pub fn count_statuses<I: IntoIterator<Item = u16>>(mut self, statuses: I) -> Self {
        self.count_statuses = statuses.into_iter().collect();
        self
    }

    /// Whether CORS preflights (`OPTIONS` with `Access-Control-Request-Method`) count.
    /// Defaults to no.
    pub fn count_preflights(mut self, on: bool) -> Self {
        self.count_preflights = on;
        self
    }

    /// Which headers report the limit. Defaults to [`Headers::Draft`].
    pub fn headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Decide and record (metrics, a log line per request that would be refused), but let
    /// every request through without rate-limit headers. Defaults to off.
    pub fn shadow(mut self, on: bool) -> Self {
        self.shadow = on;
        self
    }

    /// The most callers the memory store (or the `local` fallback) holds. Defaults to
    /// 100,000.
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// Decides in Redis instead of memory, through this shared handle.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, redis: crate::backends::Redis) -> Self {
        self.redis = Some(redis);
        self
    }

    /// What a request gets when the store fails. Defaults to [`OnStoreError::Open`].
    pub fn on_store_error(mut self, on: OnStoreError) -> Self {
        self.on_store_error = on;
        self
    }

    /// How long a request waits for the store. Defaults to 50 ms.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// The limiter's name in log lines and, unless [`prefix`](Self::prefix) is set, in its
    /// Redis keys (`callnext:rl:<name>:{caller}:<policy>`). Defaults to `rate_limit`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The start of its Redis keys. Defaults to `callnext:rl:<name>`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// No limit, more than four, a limit or burst that cannot be read or is zero, a policy
    /// name that is not a token, an IPv6 prefix over 128, `max_keys` or the store timeout of
    /// zero, or a fixed cost no policy's burst can ever hold.
    pub fn build(self) -> Result<RateLimit, ConfigError> {
        if self.limits.is_empty() {
            return Err(ConfigError::invalid(
                "limit",
                "at least one limit is needed, such as \"100/minute\"",
            ));
        }
        if self.limits.len() > MAX_POLICIES {
            return Err(ConfigError::invalid(
                "limit",
                format!(
                    "at most {MAX_POLICIES} limits per limiter, got {}; add another limiter",
                    self.limits.len()
                ),
            ));
        }
        let policies = self
            .limits
            .iter()
            .map(|(limit, burst, name)| Policy::new(limit, *burst, name.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, p) in policies.iter().enumerate() {
            if policies[..i].iter().any(|q| q.name == p.name) {
                return Err(ConfigError::invalid(
                    "limit",
                    format!("two policies are named `{}`", p.name),
                ));
            }
        }
        if self.ipv6_prefix > 128 {
            return Err(ConfigError::invalid(
                "ipv6_prefix",
                format!("at most 128 bits, got {}", self.ipv6_prefix),
            ));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::invalid(
                "max_keys",
                "must hold at least 1 caller",
            ));
        }
        let paths = crate::battery::PathRules::prefixes(&self.paths)
            .map_err(|e| ConfigError::invalid("paths", e))?;
        if self.store_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "store_timeout",
                "must be greater than zero",
            ));
        }
        if self.cost.is_none() {
            if let Some(p) = policies.iter().find(|p| p.rate.burst < self.fixed_cost) {
                return Err(ConfigError::invalid(
                    "cost",
                    format!(
                        "{} is more than the burst of `{}` ({}): no request could pass",
                        self.fixed_cost, p.name, p.rate.burst
                    ),
                ));
            }
        }
        let count_statuses = self
            .count_statuses
            .iter()
            .map(|&n| {
                StatusCode::from_u16(n)
                    .ok()
                    .filter(|_| (100..=599).contains(&n))
                    .ok_or_else(|| {
                        ConfigError::invalid("count_statuses", format!("{n} is not an HTTP status"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rates = policies.iter().map(|p| p.rate).collect();
        let prefix = self
            .prefix
            .unwrap_or_else(|| format!("callnext:rl:{}", self.name));
        let memory = || MemoryStore::new(self.max_keys, policies.len());
        #[cfg(feature = "redis")]
        let store = match self.redis {
            Some(redis) => Store::Redis {
                store: self::redis::RedisStore::new(redis, self.store_timeout),
                local: (self.on_store_error == OnStoreError::Local).then(memory),
            },
            None => Store::Memory(memory()),
        };
        #[cfg(not(feature = "redis"))]
        let store = Store::Memory(memory());
        let ipv6_mask = if self.ipv6_prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.ipv6_prefix))
        };
        Ok(RateLimit {
            shared: Arc::new(Shared {
                rendered: Rendered::new(self.headers, &policies),
                policies,
                rates,
                key: self.key,
                ipv6_mask,
                cost: self.cost,
                fixed_cost: self.fixed_cost,
                paths,
                count_preflights: self.count_preflights,
                count_statuses,
                headers: self.headers,
                shadow: self.shadow,
                store,
                on_store_error: self.on_store_error,
                #[cfg(feature = "redis")]
                store_errors: Default::default(),
                name: self.name,
                prefix,
                #[cfg(feature = "prometheus")]
                metrics: std::sync::OnceLock::new(),
            }),
        })
    }
}

enum Store {
    Memory(MemoryStore),
    #[cfg(feature = "redis")]
    Redis {
        store: self::redis::RedisStore,
        local: Option<MemoryStore>,
    },
}

struct Shared {
    policies: Vec<Policy>,
    rates: Vec<Rate>,
    rendered: Rendered,
    key: KeyBy,
    ipv6_mask: u128,
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

/// What the response side needs: the decision, when one was made, and what to charge when
/// only some statuses count.
#[derive(Debug)]
pub struct Decided(Option<Decision>, Option<(Caller, u64)>);

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
                Some(memory.check(&self.ip_caller(ip), &self.shared.rates, cost))
            }
            #[cfg(feature = "redis")]
            Store::Redis { .. } => None,
        }
    }

    fn ip_caller(&self, ip: IpAddr) -> Caller {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Caller::Ip(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => Caller::Ip(u128::from(v6) & self.shared.ipv6_mask),
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
        matches!(self.shared.key, KeyBy::User | KeyBy::ApiKey)
    }

    /// Whether the request is this limiter's to count.
    fn applies(&self, req: &Request) -> bool {
        let shared = &self.shared;
        if !shared.count_preflights && crate::battery::is_preflight(req) {
            return false;
        }
        shared.paths.is_empty() || shared.paths.matches(req.uri().path())
    }

    fn caller(&self, req: &Request) -> Caller {
        let text = |tag: &str, value: &str| {
            (!value.is_empty() && value.len() <= MAX_KEY_LEN)
                .then(|| Caller::Text(format!("{tag}{value}").into_boxed_str()))
        };
        let keyed = match &self.shared.key {
            KeyBy::Ip => None,
            KeyBy::ApiKey => req
                .extensions()
                .get::<ApiKeyId>()
                .and_then(|k| text("k:", k.as_str())),
            KeyBy::User => req
                .extensions()
                .get::<UserId>()
                .and_then(|u| text("u:", u.as_str())),
            KeyBy::Header(name) => req
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| text("h:", v)),
            KeyBy::Fn(f) => f(req).and_then(|v| text("f:", &v)),
        };
        keyed.unwrap_or_else(|| match ClientIp::of(req) {
            Some(ClientIp(ip)) => self.ip_caller(ip),
            // No address at all (a Unix socket without a trusted proxy): one caller, `::`.
            None => Caller::Ip(0),
        })
    }

    /// The answer to a decided request: on with its decision, or the 429.
    // The error is the response itself, made once and moved into the hook's flow.
    #[allow(clippy::result_large_err)]
    fn settle(&self, decision: Decision) -> Result<Decided, Response> {
        let shared = &self.shared;
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = shared.metrics.get() {
            metrics.count(&decision, shared.shadow);
        }
        if decision.allowed {
            return Ok(Decided((!shared.shadow).then_some(decision), None));
        }
        if shared.shadow {
            tracing::info!(
                middleware = %shared.name,
                retry_after_ms = decision.retry_us() / 1000,
                "rate limit (shadow mode) would refuse this request"
            );
            return Ok(Decided(None, None));
        }
        let retry = decision.retry_us().div_ceil(1_000_000).max(1);
        let mut res =
            HttpError::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
        let headers = res.headers_mut();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(retry));
        shared.rendered.write(headers, &decision, &shared.policies);
        Err(res)
    }

    #[cfg(feature = "redis")]
    #[allow(clippy::result_large_err)]
    async fn check_redis(
        &self,
        store: &self::redis::RedisStore,
        local: Option<&MemoryStore>,
        caller: Caller,
        cost: u64,
        peeked: impl FnOnce(Decision) -> Decision,
    ) -> Result<Decided, Response> {
        let shared = &self.shared;
        let tag = caller.redis_part();
        let keys: Vec<String> = shared
            .policies
            .iter()
            .map(|p| format!("{}:{{{tag}}}:{}", shared.prefix, p.name))
            .collect();
        let started = crate::instrument::clock::now();
        let result = store.check(&keys, &shared.rates, cost, &shared.name).await;
        // A call the open breaker refused took no time at the store: not a latency.
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = shared.metrics.get() {
            if !matches!(result, Err(crate::battery::Refused::Open)) {
                metrics
                    .store_seconds
                    .record_ticks(crate::instrument::clock::now().saturating_sub(started));
            }
        }
        #[cfg(not(feature = "prometheus"))]
        let _ = started;
        let failed = match result {
            Ok(decision) => return self.settle(peeked(decision)),
            Err(err) => err,
        };
        tracing::debug!(
            middleware = %shared.name,
            error = %failed,
            "rate limit store unavailable"
        );
        shared.store_errors[shared.on_store_error.slot()].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = shared.metrics.get() {
            metrics.store_error(shared.on_store_error);
        }
        match (shared.on_store_error, local) {
            (OnStoreError::Local, Some(memory)) => {
                self.settle(peeked(memory.check(&caller, &shared.rates, cost)))
            }
            (OnStoreError::Closed, _) => {
                let mut res =
                    HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
                        .into_response();
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(1u64));
                Err(res)
            }
            _ => Ok(Decided(None, None)),
        }
    }
}

impl Hook for RateLimit {
    type State = Decided;

    fn capabilities(&self) -> crate::battery::Capabilities {
        let mut caps = crate::battery::Capabilities::new()
            .kind("rate_limit")
            .inside_cors();
        if self.keyed_by_identity() {
            caps = caps.needs_identity();
        }
        for store in self.backends() {
            caps = caps.store(store);
        }
        #[cfg(feature = "prometheus")]
        let caps = {
            let limit = self.clone();
            caps.metrics(move |metrics, stack, entry| limit.register_metrics(metrics, stack, entry))
        };
        caps
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Decided> {
        if !self.applies(req) {
            return Flow::Continue(Decided(None, None));
        }
        let caller = self.caller(req);
        let shared = &self.shared;
        let cost = shared.cost.as_ref().map_or(shared.fixed_cost, |f| f(req));
        // Counting only some answers: look (cost 0 takes nothing), charge on the response.
        let (charge, ask) = if shared.count_statuses.is_empty() {
            (None, cost)
        } else {
            (Some((caller.clone(), cost)), 0)
        };
        let with_charge = move |decided: Decided| Decided(decided.0, charge);
        let peeked = move |decision: Decision| {
            if ask == cost {
                decision
            } else {
                decision.as_if(&shared.rates, cost)
            }
        };
        match &shared.store {
            Store::Memory(memory) => {
                match self.settle(peeked(memory.check(&caller, &shared.rates, ask))) {
                    Ok(decided) => Flow::Continue(with_charge(decided)),
                    Err(res) => Flow::Respond(res),
                }
            }
            #[cfg(feature = "redis")]
            Store::Redis { store, local } => Flow::wait(async move {
                self.check_redis(store, local.as_ref(), caller, ask, peeked)
                    .await
                    .map(with_charge)
            }),
        }
    }

    fn on_response<'a>(&'a self, decided: Decided, res: &'a mut Response) -> Flow<'a> {
        let shared = &self.shared;
        if let Decided(Some(decision), _) = &decided {
            shared
                .rendered
                .write(res.headers_mut(), decision, &shared.policies);
        }
        let Decided(_, Some((caller, cost))) = decided else {
            return Flow::Continue(());
        };
        if !shared.count_statuses.contains(&res.status()) {
            return Flow::Continue(());
        }
        match &shared.store {
            Store::Memory(memory) => {
                memory.check(&caller, &shared.rates, cost);
                Flow::Continue(())
            }
            #[cfg(feature = "redis")]
            Store::Redis { store, local } => Flow::wait(async move {
                // The answer stands whatever the store says; its failures are counted there.
                let _ = self
                    .check_redis(store, local.as_ref(), caller, cost, |d| d)
                    .await;
                Ok::<(), Response>(())
            }),
        }
    }
}

/// The limiter's series in a stack's metrics registry.
#[cfg(feature = "prometheus")]
pub(crate) struct LimiterMetrics {
    allowed: Vec<metrics::Counter>,
    limited: Vec<metrics::Counter>,
    shadow_limited: Vec<metrics::Counter>,
    store_errors: [metrics::Counter; 3],
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    store_seconds: Arc<crate::metrics::Histogram>,
}

#[cfg(feature = "prometheus")]
impl LimiterMetrics {
    fn count(&self, decision: &Decision, shadow: bool) {
        for (i, outcome) in decision.outcomes().iter().enumerate() {
            if decision.allowed {
                self.allowed[i].increment(1);
            } else if outcome.retry_us > 0 {
                if shadow {
                    self.shadow_limited[i].increment(1);
                } else {
                    self.limited[i].increment(1);
                }
            }
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn store_error(&self, action: OnStoreError) {
        self.store_errors[action.slot()].increment(1);
    }
}

#[cfg(feature = "prometheus")]
impl RateLimit {
    /// Registers its series (called when the stack records into `metrics`).
    pub(crate) fn register_metrics(
        &self,
        metrics: &crate::metrics::Metrics,
        stack: &str,
        entry: &str,
    ) {
        use crate::metrics::{
            RATE_LIMIT_REQUESTS, RATE_LIMIT_STORE_ERRORS, RATE_LIMIT_STORE_SECONDS,
        };
        let shared = &self.shared;
        let base = || {
            vec![
                ("stack", stack.to_owned()),
                ("middleware", entry.to_owned()),
            ]
        };
        let per_policy = |decision: &str| {
            shared
                .policies
                .iter()
                .map(|p| {
                    let mut labels = base();
                    labels.push(("policy", p.name.clone()));
                    labels.push(("decision", decision.to_owned()));
                    metrics.counter(RATE_LIMIT_REQUESTS, &labels)
                })
                .collect()
        };
        let store = match &shared.store {
            Store::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Store::Redis { .. } => "redis",
        };
        let error = |action: &str| {
            let mut labels = base();
            labels.push(("action", action.to_owned()));
            metrics.counter(RATE_LIMIT_STORE_ERRORS, &labels)
        };
        let mut labels = base();
        labels.push(("store", store.to_owned()));
        let _ = shared.metrics.set(LimiterMetrics {
            allowed: per_policy("allowed"),
            limited: per_policy("limited"),
            shadow_limited: per_policy("shadow_limited"),
            store_errors: [error("open"), error("closed"), error("local")],
            store_seconds: metrics.histogram(RATE_LIMIT_STORE_SECONDS, labels),
        });
    }
}
