//! `[middleware.auth]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use crate::config::fields::OneOrMany;
use crate::config::{Duration, FileError, MiddlewareSettings};
use crate::Entry;
use std::collections::BTreeMap;

/// A `[middleware.auth]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        api_keys: String,
        public_paths: Vec<String>,
        scopes: BTreeMap<String, Vec<String>>,
        cache_ttl: Duration,
        cache_capacity: u64,
        jwks_url: String,
        jwt_algorithms: Vec<String>,
        jwt_issuer: String,
        jwt_audience: OneOrMany<String>,
        any_audience: bool,
        jwt_leeway: Duration,
        jwks_min_refresh: Duration,
        jwks_max_age: Duration,
        jwks_timeout: Duration,
        external_url: String,
        external_headers: Vec<String>,
        external_copy_headers: Vec<String>,
        external_timeout: Duration,
        external_cache_ttl: Duration,
        store_timeout: Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                api_keys: String::new(),
                public_paths: ["/", "/health/live", "/health/ready"]
                    .map(str::to_owned)
                    .to_vec(),
                scopes: BTreeMap::new(),
                cache_ttl: Duration::from_secs(30),
                cache_capacity: 10_000,
                jwks_url: String::new(),
                jwt_algorithms: vec!["RS256".to_owned()],
                jwt_issuer: String::new(),
                jwt_audience: OneOrMany::Many(Vec::new()),
                any_audience: false,
                jwt_leeway: Duration::from_secs(60),
                jwks_min_refresh: Duration::from_secs(10),
                jwks_max_age: Duration::from_secs(300),
                jwks_timeout: Duration::from_secs(5),
                external_url: String::new(),
                external_headers: ["authorization", "cookie", "x-api-key"]
                    .map(str::to_owned)
                    .to_vec(),
                external_copy_headers: Vec::new(),
                external_timeout: Duration::from_secs(1),
                external_cache_ttl: Duration::from_secs(5),
                store_timeout: Duration::from_secs(1),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let mut builder = crate::middleware::Auth::builder()
        .public_paths(s.public_paths)
        .cache_ttl(s.cache_ttl.get())
        .cache_capacity(s.cache_capacity)
        .store_timeout(s.store_timeout.get());
    for (prefix, scopes) in s.scopes {
        builder = builder.require_scopes(prefix, scopes);
    }
    #[cfg(feature = "sql")]
    if !s.api_keys.is_empty() {
        let store = crate::middleware::auth::SqlKeyStore::open(&s.api_keys)
            .map_err(|err| settings.error("api_keys", err))?;
        builder = builder.api_keys(store);
    }
    #[cfg(not(feature = "sql"))]
    if !s.api_keys.is_empty() {
        return Err(settings.error("api_keys", "needs the `sql` feature"));
    }
    #[cfg(feature = "jwt")]
    if !s.jwks_url.is_empty() {
        let mut jwt = crate::middleware::auth::Jwt::jwks(s.jwks_url)
            .algorithms(s.jwt_algorithms)
            .leeway(s.jwt_leeway.get())
            .min_refresh_interval(s.jwks_min_refresh.get())
            .jwks_max_age(s.jwks_max_age.get())
            .timeout(s.jwks_timeout.get())
            .any_audience(s.any_audience);
        if !s.jwt_issuer.is_empty() {
            jwt = jwt.issuer(s.jwt_issuer);
        }
        for audience in s
            .jwt_audience
            .into_vec()
            .into_iter()
            .filter(|a| !a.is_empty())
        {
            jwt = jwt.audience(audience);
        }
        builder = builder.jwt(jwt);
    }
    #[cfg(not(feature = "jwt"))]
    if !s.jwks_url.is_empty() {
        return Err(settings.error("jwks_url", "needs the `jwt` feature"));
    }
    #[cfg(feature = "external-auth")]
    if !s.external_url.is_empty() {
        builder = builder.external(
            crate::middleware::auth::ExternalAuth::new(s.external_url)
                .forward_headers(s.external_headers)
                .copy_headers(s.external_copy_headers)
                .timeout(s.external_timeout.get())
                .cache_ttl(s.external_cache_ttl.get()),
        );
    }
    #[cfg(not(feature = "external-auth"))]
    if !s.external_url.is_empty() {
        return Err(settings.error("external_url", "needs the `external-auth` feature"));
    }
    let auth = builder.build().map_err(|err| settings.built(&err))?;
    Ok(Entry::hook(auth))
}
