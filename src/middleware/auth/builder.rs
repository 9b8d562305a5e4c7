//! [`AuthBuilder`]: the authentication battery's settings, checked when built.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What a path prefix requires.
#[derive(Debug, Clone)]
struct Rule {
    prefix: String,
    scopes: Vec<String>,
}

/// The settings of [`Auth`], checked by [`AuthBuilder::build`].
#[must_use]
pub struct AuthBuilder {
    store: Option<(Arc<dyn KeyStore>, Arc<dyn Any + Send + Sync>)>,
    #[cfg(feature = "jwt")]
    jwt: Option<Jwt>,
    #[cfg(feature = "external-auth")]
    external: Option<ExternalAuth>,
    public: Vec<String>,
    rules: Vec<Rule>,
    cache_ttl: Duration,
    miss_ttl: Duration,
    store_timeout: Duration,
    cache_capacity: u64,
}

impl std::fmt::Debug for AuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthBuilder")
            .field("public", &self.public)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl AuthBuilder {
    /// Where API keys are looked up.
    pub fn api_keys(mut self, store: impl KeyStore) -> Self {
        let store = Arc::new(store);
        self.store = Some((store.clone(), store));
        self
    }

    /// Accept JWTs, checked as `jwt` says.
    #[cfg(feature = "jwt")]
    pub fn jwt(mut self, jwt: Jwt) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Ask an external service about the requests that carry neither an API key nor a JWT.
    #[cfg(feature = "external-auth")]
    pub fn external(mut self, external: ExternalAuth) -> Self {
        self.external = Some(external);
        self
    }

    /// Paths answered without credentials: exact paths, or prefixes ending in `/*`.
    pub fn public_paths<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.public = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Requests under `prefix` need these scopes (all of them), as FastAPI's
    /// `Security(scopes=[...])`. The longest matching prefix decides.
    pub fn require_scopes<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        prefix: impl Into<String>,
        scopes: I,
    ) -> Self {
        self.rules.push(Rule {
            prefix: prefix.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// How long a found key is trusted without asking the store again: the longest a
    /// revocation on another instance takes to be seen. Defaults to 30 s.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How many keys the cache holds (unknown ids: a tenth of it). Defaults to 10,000.
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The longest one API-key store call may take: a database that has not answered by then
    /// fails the request with a 503, and after three failures in a row it is left alone for
    /// half a second at a time ([`StoreGuard`](crate::battery::StoreGuard)). Defaults to 1 s.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// Nothing to check credentials with (no key store, JWT settings or external service),
    /// a public path or scope prefix that does not start with `/`, an empty scope, a cache of
    /// zero, or settings of [`Jwt`] or [`ExternalAuth`] they name.
    pub fn build(self) -> Result<Auth, ConfigError> {
        #[allow(unused_mut)]
        let mut decides = self.store.is_some();
        #[cfg(feature = "jwt")]
        let jwt = {
            decides |= self.jwt.is_some();
            self.jwt.map(Jwt::build).transpose()?.map(Arc::new)
        };
        #[cfg(feature = "external-auth")]
        let external = {
            decides |= self.external.is_some();
            self.external.map(ExternalAuth::build).transpose()?
        };
        if !decides {
            return Err(ConfigError::invalid(
                "api_keys",
                "nothing to check credentials with: set `api_keys` (a sqlite:// or postgres:// URL), `jwks_url` or `external_url`",
            ));
        }
        let public =
            PathRules::parse(&self.public).map_err(|e| ConfigError::invalid("public_paths", e))?;
        let prefixes = PathRules::prefixes(self.rules.iter().map(|r| &r.prefix))
            .map_err(|e| ConfigError::invalid("public_paths", e))?;
        if self
            .rules
            .iter()
            .any(|r| r.scopes.iter().any(|s| !is_scope(s)))
        {
            return Err(ConfigError::invalid(
                "scopes",
                "a scope is a non-empty word of visible ASCII without `\"` or `\\`",
            ));
        }
        if self.store_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "store_timeout",
                "must be greater than zero",
            ));
        }
        if self.cache_ttl.is_zero() || self.cache_capacity == 0 {
            return Err(ConfigError::invalid(
                "cache_ttl",
                "the key cache needs a time and a capacity above zero",
            ));
        }
        let scopes = self.rules.into_iter().map(|r| r.scopes).collect();
        let (store, key_store) = self.store.unzip();
        Ok(Auth {
            shared: Arc::new(Shared {
                checker: store.map(|store| {
                    Checker::new(
                        store,
                        self.cache_ttl,
                        self.miss_ttl.min(self.cache_ttl),
                        self.cache_capacity,
                        self.store_timeout,
                    )
                }),
                key_store,
                store_errors: Arc::default(),
                #[cfg(feature = "jwt")]
                jwt,
                #[cfg(feature = "external-auth")]
                external,
                public,
                prefixes,
                scopes,
            }),
        })
    }
}

/// RFC 6750's `scope-token`: visible ASCII but `"` and `\`.
fn is_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

impl Auth {
    /// A builder; at least one of a key store, JWT settings or an external service is
    /// required.
    pub fn builder() -> AuthBuilder {
        AuthBuilder {
            store: None,
            #[cfg(feature = "jwt")]
            jwt: None,
            #[cfg(feature = "external-auth")]
            external: None,
            public: Vec::new(),
            rules: Vec::new(),
            cache_ttl: Duration::from_secs(30),
            miss_ttl: Duration::from_secs(5),
            store_timeout: Duration::from_secs(1),
            cache_capacity: 10_000,
        }
    }
}
