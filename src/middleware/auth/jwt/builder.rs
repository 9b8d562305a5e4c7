//! [`Jwt`]: how tokens are checked (the JWKS URL, pinned algorithms, issuer, audience,
//! leeway, the key set's refresh), checked when built.

#[allow(clippy::wildcard_imports)]
use super::*;

/// How [`Auth`](crate::middleware::Auth) checks JWTs: where their keys are, which algorithms are allowed,
/// and the claims required. Given to [`AuthBuilder::jwt`](crate::middleware::auth::AuthBuilder::jwt); checked
/// when the battery is built.
///
/// ```
/// use std::time::Duration;
/// use callnext::middleware::auth::{Auth, Jwt};
///
/// let auth = Auth::builder()
///     .jwt(
///         Jwt::jwks("https://login.example/.well-known/jwks.json")
///             .algorithms(["RS256", "ES256"])
///             .issuer("https://login.example/")
///             .audience("https://api.example")
///             .leeway(Duration::from_secs(30)),
///     )
///     .build();
/// assert!(auth.is_ok());
///
/// // A token issued to another application of the same identity provider is not for this one.
/// let err = Auth::builder().jwt(Jwt::jwks("https://login.example/jwks")).build();
/// assert_eq!(
///     err.unwrap_err().to_string(),
///     "invalid `jwt_audience`: name the audience this API's tokens are issued for (its identifier at the identity provider), or set `any_audience = true` to accept tokens issued to any of its applications"
/// );
///
/// // The key set decides which tokens are trusted: plain HTTP only to this machine.
/// let err = Auth::builder().jwt(Jwt::jwks("http://login.example/jwks").audience("api")).build();
/// assert_eq!(
///     err.unwrap_err().to_string(),
///     "invalid `jwks_url`: plain http:// only to a loopback address (anyone on the path could hand out keys); use https://"
/// );
///
/// let err = Auth::builder().jwt(Jwt::jwks("https://login.example/jwks").algorithms(["HS256"])).build();
/// assert_eq!(
///     err.unwrap_err().to_string(),
///     "invalid `jwt_algorithms`: `HS256` cannot be verified with a JWKS's public keys; allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
/// );
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Jwt {
    jwks_url: String,
    algorithms: Vec<String>,
    issuer: Option<String>,
    audience: Vec<String>,
    any_audience: bool,
    leeway: Duration,
    min_refresh: Duration,
    max_age: Duration,
    timeout: Duration,
    unknown_capacity: u64,
    verified_capacity: u64,
}

impl Jwt {
    /// Tokens signed by the keys published at `url` (a JSON Web Key Set, over HTTPS; plain
    /// HTTP only to a loopback address). An [`audience`](Self::audience) is required (or
    /// [`any_audience`](Self::any_audience)). Defaults: RS256 only, no issuer check, 60 s of
    /// leeway, a key set refreshed
    /// every 5 minutes and at most every 10 s for an unknown key id, 5 s to fetch it.
    pub fn jwks(url: impl Into<String>) -> Self {
        Self {
            jwks_url: url.into(),
            algorithms: vec!["RS256".to_owned()],
            issuer: None,
            audience: Vec::new(),
            any_audience: false,
            leeway: Duration::from_secs(60),
            min_refresh: Duration::from_secs(10),
            max_age: Duration::from_secs(300),
            timeout: Duration::from_secs(5),
            unknown_capacity: 10_000,
            verified_capacity: 10_000,
        }
    }

    /// Makes callnext's cryptography for jsonwebtoken (on ring, as rustls's) the process's
    /// provider, unless one was installed before. Building an [`Auth`](crate::middleware::Auth)
    /// with a [`Jwt`] does it; call it first when the application signs or decodes tokens with
    /// jsonwebtoken itself (in its tests, say), which has no provider of its own here.
    ///
    /// ```
    /// use callnext::middleware::auth::Jwt;
    /// use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    ///
    /// Jwt::install_crypto();
    /// let token = encode(
    ///     &Header::new(Algorithm::HS256),
    ///     &serde_json::json!({"sub": "ada"}),
    ///     &EncodingKey::from_secret(b"a test secret"),
    /// );
    /// assert!(token.is_ok());
    /// ```
    pub fn install_crypto() {
        super::crypto::install();
    }

    /// How many verified tokens are remembered (by their SHA-256 digest, until their `exp`
    /// or until the key set changes), so a token sent again is not verified again: a
    /// signature check costs tens of microseconds, a lookup well under one. `0` verifies
    /// every request. Default 10,000.
    pub fn verified_tokens(mut self, capacity: u64) -> Self {
        self.verified_capacity = capacity;
        self
    }

    /// The algorithms accepted (`RS256`, `ES256`, `EdDSA`, ...). A token's own `alg` is only
    /// checked against this list, never trusted; `none` and the `HS*` family are refused.
    pub fn algorithms<I: IntoIterator<Item = S>, S: Into<String>>(mut self, algs: I) -> Self {
        self.algorithms = algs.into_iter().map(Into::into).collect();
        self
    }

    /// The `iss` a token must carry.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// An `aud` a token must carry (call again to accept several).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.push(audience.into());
        self
    }

    /// Accepts tokens whatever their `aud`: every token the key set signed, including those
    /// the identity provider issued to other applications (a shared Keycloak realm, Auth0
    /// tenant or Entra ID directory). Off by default; the order linter and `--print-stack`
    /// report it when on.
    pub fn any_audience(mut self, any: bool) -> Self {
        self.any_audience = any;
        self
    }

    /// Clock skew forgiven on `exp` and `nbf`. Defaults to 60 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The shortest time between two fetches of the key set caused by unknown key ids, and
    /// how long an unknown key id is refused without asking. Defaults to 10 s.
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    /// How old the key set may grow before it is fetched again in the background (removed
    /// keys stop verifying within this time). Defaults to 5 minutes.
    pub fn jwks_max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The deadline of one fetch of the key set. Defaults to 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub(in crate::middleware::auth) fn build(self) -> Result<JwtChecker, ConfigError> {
        let url = crate::http_client::http_url("jwks_url", &self.jwks_url)?;
        if url.scheme_str() == Some("http") && !is_loopback(url.host().unwrap_or("")) {
            return Err(ConfigError::invalid(
                "jwks_url",
                "plain http:// only to a loopback address (anyone on the path could hand out keys); use https://",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                "jwt_algorithms",
                "name at least one algorithm (RS256, ES256, EdDSA, ...)",
            ));
        }
        let allowed = || {
            ASYMMETRIC
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut algorithms = Vec::new();
        for name in &self.algorithms {
            match Algorithm::from_str(name) {
                Ok(alg) if ASYMMETRIC.contains(&alg) => algorithms.push(alg),
                _ => {
                    return Err(ConfigError::invalid(
                        "jwt_algorithms",
                        format!(
                            "`{}` cannot be verified with a JWKS's public keys; allowed: {}",
                            crate::Printable::new(name),
                            allowed()
                        ),
                    ))
                }
            }
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "jwks_timeout",
                "must be greater than zero",
            ));
        }
        if self.max_age < self.min_refresh || self.max_age.is_zero() {
            return Err(ConfigError::invalid(
                "jwks_max_age",
                "must be greater than zero and at least `min_refresh_interval`",
            ));
        }
        if self.audience.is_empty() && !self.any_audience {
            return Err(ConfigError::invalid(
                "jwt_audience",
                "name the audience this API's tokens are issued for (its identifier at the identity provider), or set `any_audience = true` to accept tokens issued to any of its applications",
            ));
        }
        super::crypto::install();
        let validations = algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = self.leeway.as_secs();
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(iss) = &self.issuer {
                    v.set_issuer(&[iss]);
                    required.push("iss");
                }
                if self.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&self.audience);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                (alg, v)
            })
            .collect();
        Ok(JwtChecker {
            guard: crate::battery::StoreGuard::new("JWKS URL", &url.to_string(), self.timeout),
            url,
            client: HttpClient::new(self.timeout),
            validations,
            keys: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            last_fetch: Mutex::new(None),
            background: AtomicBool::new(false),
            unknown: moka::sync::Cache::builder()
                .max_capacity(self.unknown_capacity)
                .time_to_live(self.min_refresh.max(Duration::from_millis(1)))
                .build(),
            // Entries also end with the key set (a fetch at least every `jwks_max_age` makes
            // a new one), so none outlives it by much.
            verified: (self.verified_capacity > 0).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(self.verified_capacity)
                    .time_to_live(self.max_age)
                    .build()
            }),
            generations: AtomicU64::new(0),
            min_refresh: self.min_refresh,
            max_age: self.max_age,
            timeout: self.timeout,
            any_audience: self.audience.is_empty(),
        })
    }
}

/// `localhost`, or an address of 127.0.0.0/8 or `::1`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}
