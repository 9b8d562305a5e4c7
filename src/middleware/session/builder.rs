//! [`SessionsBuilder`]: the session battery's settings, checked when built.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The settings of [`Sessions`], checked by [`SessionsBuilder::build`].
#[must_use]
pub struct SessionsBuilder {
    store: Option<(Arc<dyn SessionStore>, Arc<dyn Any + Send + Sync>)>,
    secret: Vec<u8>,
    old_secrets: Vec<Vec<u8>>,
    cookie: String,
    host_prefix: bool,
    /// `None`: the absolute timeout; `Some(ZERO)`: no `Max-Age`.
    max_age: Option<Duration>,
    path: String,
    domain: Option<String>,
    idle: Duration,
    absolute: Duration,
    store_timeout: Duration,
}

impl std::fmt::Debug for SessionsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsBuilder")
            .field("cookie", &self.cookie)
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .finish_non_exhaustive()
    }
}

impl SessionsBuilder {
    /// Where sessions live. Defaults to a [`MemoryStore`] of 100,000 sessions.
    pub fn store(mut self, store: impl SessionStore) -> Self {
        let store = Arc::new(store);
        self.store = Some((store.clone(), store));
        self
    }

    /// The secret that signs the cookie: at least 64 bytes (required).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = secret.as_ref().to_vec();
        self
    }

    /// Secrets that signed cookies before the current one, still accepted (key rotation).
    pub fn old_secrets<I: IntoIterator<Item = S>, S: AsRef<[u8]>>(mut self, secrets: I) -> Self {
        self.old_secrets = secrets.into_iter().map(|s| s.as_ref().to_vec()).collect();
        self
    }

    /// The cookie's name. Defaults to `id` (a name that says nothing about the framework).
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = name.into();
        self
    }

    /// Prefix the cookie's name with `__Host-` (browsers then insist on `Secure`, `Path=/` and
    /// no `Domain`). Defaults to off.
    pub fn host_prefix(mut self, on: bool) -> Self {
        self.host_prefix = on;
        self
    }

    /// The cookie's `Max-Age`: how long the browser keeps it. Defaults to the absolute
    /// timeout (a session cannot outlive it anyway); `Duration::ZERO` sends none, so the
    /// browser drops the cookie when it closes. The server's timeouts hold either way.
    pub fn cookie_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The cookie's `Path`. Defaults to `/`.
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The cookie's `Domain` (sent to that domain's subdomains too). Defaults to none: the
    /// cookie goes back only to the host that set it.
    pub fn cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// A session unused for this long ends. Defaults to 30 minutes.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// A session ends this long after it began, however active. Defaults to 8 hours.
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.absolute = absolute;
        self
    }

    /// The longest one store call may take: a store that has not answered by then (a stalled
    /// Redis, a database behind a network that drops packets) fails the request with a 503,
    /// and after three failures in a row the store is left alone for half a second at a time
    /// ([`StoreGuard`](crate::battery::StoreGuard)). Not applied to the [`MemoryStore`].
    /// Defaults to 1 s.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A secret (or old secret) shorter than 64 bytes, a cookie name that is not a token,
    /// timeouts of zero or an idle timeout longer than the absolute one.
    pub fn build(self) -> Result<Sessions, ConfigError> {
        if self.secret.len() < 64 {
            return Err(ConfigError::invalid(
                "secret",
                format!(
                    "must be at least 64 bytes, got {} (set it, or CALLNEXT_SESSION_SECRET)",
                    self.secret.len()
                ),
            ));
        }
        if self.old_secrets.iter().any(|s| s.len() < 64) {
            return Err(ConfigError::invalid(
                "old_secrets",
                "each must be at least 64 bytes",
            ));
        }
        if self.cookie.is_empty()
            || !self
                .cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(ConfigError::invalid(
                "cookie",
                format!("`{}` is not a cookie name", self.cookie),
            ));
        }
        if self.idle.is_zero() || self.absolute.is_zero() {
            return Err(ConfigError::invalid(
                "idle_timeout",
                "timeouts must be greater than zero",
            ));
        }
        if self.idle > self.absolute {
            return Err(ConfigError::invalid(
                "idle_timeout",
                "cannot be longer than absolute_timeout",
            ));
        }
        let key = |secret: &[u8]| {
            Key::try_from(secret)
                .map_err(|err| ConfigError::invalid("secret", format!("cannot be a key: {err}")))
        };
        let old_keys = self
            .old_secrets
            .iter()
            .map(|s| key(s))
            .collect::<Result<Vec<_>, _>>()?;
        if !self.path.starts_with('/')
            || self
                .path
                .bytes()
                .any(|b| b == b';' || !(0x21..0x7f).contains(&b))
        {
            return Err(ConfigError::invalid(
                "cookie_path",
                format!(
                    "`{}` is not a cookie path: it starts with `/`, without spaces or `;`",
                    crate::Printable::new(&self.path)
                ),
            ));
        }
        if let Some(domain) = &self.domain {
            let valid = !domain.is_empty()
                && domain.len() <= 253
                && domain.trim_start_matches('.').split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(ConfigError::invalid(
                    "cookie_domain",
                    format!("`{}` is not a domain name", crate::Printable::new(domain)),
                ));
            }
        }
        if self.host_prefix && (self.path != "/" || self.domain.is_some()) {
            return Err(ConfigError::invalid(
                "host_prefix",
                "a `__Host-` cookie has `Path=/` and no `Domain` (browsers refuse it otherwise): leave `cookie_path` and `cookie_domain` unset",
            ));
        }
        let max_age = self.max_age.unwrap_or(self.absolute);
        let name = if self.host_prefix {
            format!("__Host-{}", self.cookie)
        } else {
            self.cookie
        };
        if self.store_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "store_timeout",
                "must be greater than zero",
            ));
        }
        let (inner, any) = self.store.unwrap_or_else(|| {
            let memory = Arc::new(MemoryStore::new(100_000));
            (memory.clone(), memory)
        });
        let guard = (!any.is::<MemoryStore>())
            .then(|| StoreGuard::new("session store", &store_url(&*any), self.store_timeout));
        Ok(Sessions {
            shared: Arc::new(Shared {
                store: Measured {
                    inner,
                    any,
                    guard,
                    errors: Arc::default(),
                    #[cfg(feature = "prometheus")]
                    metrics: std::sync::OnceLock::new(),
                },
                key: key(&self.secret)?,
                old_keys,
                cookie: name,
                host_prefix: self.host_prefix,
                max_age: (!max_age.is_zero()).then(|| {
                    cookie::time::Duration::seconds(
                        i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
                    )
                }),
                path: self.path,
                domain: self.domain,
                idle_ms: u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX),
                absolute_ms: u64::try_from(self.absolute.as_millis()).unwrap_or(u64::MAX),
            }),
        })
    }
}

impl Sessions {
    /// A builder; a secret is required.
    pub fn builder() -> SessionsBuilder {
        SessionsBuilder {
            store: None,
            secret: Vec::new(),
            old_secrets: Vec::new(),
            cookie: "id".to_owned(),
            host_prefix: false,
            max_age: None,
            path: "/".to_owned(),
            domain: None,
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(8 * 3600),
            store_timeout: Duration::from_secs(1),
        }
    }
}
