//! [`RateLimitBuilder`]: a limiter's settings, checked when it is built.

#[allow(clippy::wildcard_imports)]
use super::*;

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
    /// authentications). Every request is charged before it runs and the charge is given back
    /// when its status is not one of these, so concurrent guesses (on many connections, or as
    /// the streams of one HTTP/2 connection) cannot all pass before any is answered: at most
    /// the quota is in flight at once. A caller out of quota is refused before its request
    /// runs. Put the limiter outside (before) the middleware whose answers it counts.
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
                store: Box::new(self::redis::RedisStore::new(redis, self.store_timeout)),
                local: (self.on_store_error == OnStoreError::Local).then(memory),
            },
            None => Store::Memory(memory()),
        };
        #[cfg(not(feature = "redis"))]
        let store = Store::Memory(memory());
        Ok(RateLimit {
            shared: Arc::new(Shared {
                rendered: Rendered::new(self.headers, &policies),
                policies,
                rates,
                callers: crate::battery::CallerRule::new(self.key, self.ipv6_prefix),
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
