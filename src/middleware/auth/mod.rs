//! [`Auth`]: who a request is from, and whether it may do what it asks, by API keys, JWTs or
//! an external auth service (any of them, together).
//!
//! - **API keys** ([`AuthBuilder::api_keys`]) come as `Authorization: Bearer <key>` or
//!   `X-API-Key: <key>`. Keys are made by callnext (`cnk_<16 hex id>_<64 hex secret>`, 256
//!   random bits: [`SqlKeyStore::create`], or `callnext keys create`), stored only as a
//!   SHA-256 digest, found by their public id and compared in constant time. Found keys are
//!   cached for `cache_ttl` (30 s) and unknown ids for a few seconds, both bounded, so valid
//!   traffic and random keys alike stay off the database; a revocation takes effect within
//!   `cache_ttl` (at once through [`Auth::revoke`] on the instance that revokes).
//! - **JWTs** ([`AuthBuilder::jwt`], feature `jwt`) come as `Authorization: Bearer <token>`
//!   and are verified on every request with a key from a JWKS URL, by an algorithm pinned by
//!   the settings (never the token's choice, never `none`); `exp` is required, `iss` and
//!   `aud` are checked when set. The key set is cached, refreshed in one flight, at most every
//!   `min_refresh_interval` for unknown key ids, which are then refused from a bounded cache.
//!   See [`Jwt`].
//! - **An external service** ([`AuthBuilder::external`], feature `external-auth`) decides the
//!   requests the other two do not claim (no API key, no JWT), as nginx's `auth_request`:
//!   see [`ExternalAuth`].
//! - Answers: 401 with `WWW-Authenticate: Bearer` when credentials are missing, and
//!   `Bearer error="invalid_token"` when they are wrong; 403 with
//!   `error="insufficient_scope", scope="..."` when a path's required scopes are not held;
//!   **503 when what decides is down** (the key store, the JWKS URL, the auth service: never
//!   a 401 for an outage). JSON bodies in callnext's error shape; CORS preflights pass; paths
//!   in `public_paths` are not checked.
//! - A request that passes carries an [`Identity`] (an extractor; later middlewares find it
//!   in the extensions), and the [`ApiKeyId`] or [`UserId`] the rate limiter
//!   can key on.
//!
//! ```
//! # #[cfg(not(feature = "sql"))] fn main() {}
//! # #[cfg(feature = "sql")]
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use axum::{routing::get, Router};
//! use callnext::middleware::auth::{Auth, Identity, SqlKeyStore};
//! use callnext::{Stack, TestClient};
//!
//! let dir = std::env::temp_dir().join(format!("callnext-auth-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let keys = SqlKeyStore::open(&format!("sqlite://{}", dir.join("keys.db").display())).unwrap();
//! let made = keys.create("reporting", &["reports:read".to_owned()]).await.unwrap();
//!
//! let auth = Auth::builder()
//!     .api_keys(keys)
//!     .require_scopes("/reports", ["reports:read"])
//!     .build()
//!     .unwrap();
//! let app = Router::new().route("/reports", get(|who: Identity| async move { who.subject().to_owned() }));
//! let client = TestClient::new(Stack::new().hook(auth).service(app));
//!
//! assert_eq!(client.get("/reports").await.status(), 401);
//! let res = client.get("/reports").bearer(&made.key).await;
//! assert_eq!(res.text(), "reporting");
//! # }
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

mod answers;
mod api_key;
mod builder;
#[cfg(feature = "external-auth")]
mod external;
mod identity;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "sql")]
mod keys_command;
#[cfg(feature = "sql")]
mod sql;

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{header, StatusCode};

use crate::battery::PathRules;

#[cfg(feature = "jwt")]
use self::answers::looks_like_jwt;
use self::answers::{credential, flow, forbidden, unauthorized, unavailable};
pub use self::api_key::{
    digest, generate, public_id, KeyStore, KeyStoreError, NewKey, StoredKey, KEY_PREFIX,
};
use self::api_key::{Checked, Checker};
pub use self::builder::AuthBuilder;
#[cfg(feature = "external-auth")]
pub use self::external::ExternalAuth;
pub(crate) use self::identity::Principal;
use self::identity::Who;
pub use self::identity::{AuthMethod, Identity};
#[cfg(feature = "jwt")]
pub use self::jwt::Jwt;
#[cfg(feature = "sql")]
pub use self::keys_command::KeyCommand;
#[cfg(feature = "sql")]
pub use self::sql::SqlKeyStore;
use crate::{ApiKeyId, ConfigError, Flow, Hook, HttpError, Request, Response, UserId};

struct Shared {
    checker: Option<Checker>,
    /// The checker's store, to tell which it is (for the live page).
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    key_store: Option<Arc<dyn Any + Send + Sync>>,
    /// Requests answered 503 because the key store failed, whether or not metrics are
    /// recorded.
    store_errors: Arc<AtomicU64>,
    #[cfg(feature = "jwt")]
    jwt: Option<Arc<jwt::JwtChecker>>,
    #[cfg(feature = "external-auth")]
    external: Option<external::ExternalChecker>,
    public: PathRules,
    /// The prefixes of [`AuthBuilder::require_scopes`], and the scopes each requires.
    prefixes: PathRules,
    scopes: Vec<Vec<String>>,
}

/// The authentication battery; see the [module docs](self). Made by [`Auth::builder`].
#[derive(Clone)]
pub struct Auth {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("public", &self.shared.public)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Forgets this instance's cached copy of key `id`, so a revocation made through the
    /// store is seen here at once (other instances see it within `cache_ttl`).
    pub fn revoke(&self, id: &str) {
        if let Some(checker) = &self.shared.checker {
            checker.forget(id);
        }
    }

    /// The key store it asks, for the live page: a SQL store with the requests answered 503
    /// because it failed (`store_errors`); none for a store of the application's.
    pub(crate) fn backends(&self) -> Vec<crate::backends::Backend> {
        #[cfg(feature = "sql")]
        if let Some(any) = &self.shared.key_store {
            let sql = any
                .downcast_ref::<SqlKeyStore>()
                .or_else(|| any.downcast_ref::<Arc<SqlKeyStore>>().map(|s| &**s));
            if let Some(sql) = sql {
                let errors = Arc::clone(&self.shared.store_errors);
                let counters =
                    Arc::new(move || vec![("store_errors", errors.load(Ordering::Relaxed))]);
                return vec![sql.backend(counters)];
            }
        }
        Vec::new()
    }

    fn is_public(&self, path: &str) -> bool {
        self.shared.public.matches(path)
    }

    fn required(&self, path: &str) -> &[String] {
        let shared = &*self.shared;
        shared
            .prefixes
            .longest_match(path)
            .map_or(&[], |i| shared.scopes[i].as_slice())
    }
}

impl Hook for Auth {
    /// Who the request is from, put on the response too for the middlewares outside (the
    /// access log's `user`).
    type State = Option<Identity>;

    fn capabilities(&self) -> crate::battery::Capabilities {
        let mut caps = crate::battery::Capabilities::new()
            .kind("auth")
            .inside_cors()
            .identifies();
        for store in self.backends() {
            caps = caps.store(store);
        }
        #[cfg(feature = "jwt")]
        if self.shared.jwt.as_ref().is_some_and(|jwt| jwt.any_audience) {
            caps = caps.caution(
                "jwt-any-audience",
                "accepts JWTs issued to any application of its identity provider (`any_audience = true`): name the audience instead",
            );
        }
        caps
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Option<Identity>> {
        // Headers the external service vouches for are never taken from the client.
        #[cfg(feature = "external-auth")]
        if let Some(external) = &self.shared.external {
            for name in external.vouched() {
                req.headers_mut().remove(name);
            }
        }
        // CORS preflights carry no credentials: they pass (CORS, outside, answers them). Any
        // other `OPTIONS` is authenticated.
        if crate::battery::is_preflight(req) {
            return Flow::Continue(None);
        }
        if self.is_public(req.uri().path()) {
            return Flow::Continue(None);
        }
        let shared = &*self.shared;
        let credential = credential(req);
        if let (Some(Ok(key)), Some(checker)) = (credential, &shared.checker) {
            if key.starts_with(KEY_PREFIX) {
                // Cached keys (the common case) are decided here, without a future.
                if let Some(checked) = checker.check_cached(key) {
                    return flow(self.admit(req, checked));
                }
                let key = key.to_owned();
                return Flow::wait(async move {
                    let checked = checker.check(&key).await.map_err(|err| {
                        shared.store_errors.fetch_add(1, Ordering::Relaxed);
                        unavailable("the API key store", &err)
                    })?;
                    self.admit(req, checked).map(Some)
                });
            }
        }
        #[cfg(feature = "jwt")]
        if let (Some(Ok(token)), Some(jwt)) = (credential, &shared.jwt) {
            if looks_like_jwt(token) {
                if let Some(decided) = jwt.check_now(token) {
                    return flow(self.admit_token(req, decided));
                }
                let token = token.to_owned();
                return Flow::wait(async move {
                    let decided = jwt.check(&token).await;
                    self.admit_token(req, decided).map(Some)
                });
            }
        }
        #[cfg(feature = "external-auth")]
        if let Some(external) = &shared.external {
            let key = match external.cached(req) {
                Ok(decision) => return flow(self.admit_external(req, decision)),
                Err(key) => key,
            };
            let asked = external.ask(req, key);
            return Flow::wait(async move {
                let decision = asked
                    .await
                    .map_err(|err| unavailable("the external auth service", &err))?;
                self.admit_external(req, decision).map(Some)
            });
        }
        Flow::respond(match credential {
            None => unauthorized(None),
            Some(Err(())) => unauthorized(Some("Invalid credentials")),
            Some(Ok(key)) if key.starts_with(KEY_PREFIX) => unauthorized(Some("Invalid API key")),
            Some(Ok(_)) => unauthorized(Some("Invalid token")),
        })
    }

    fn on_response<'a>(&'a self, who: Option<Identity>, res: &'a mut Response) -> Flow<'a> {
        if let Some(who) = who {
            // The subject for the batteries outside (the access log's `user`), which know
            // `UserId`, not this battery's types.
            res.extensions_mut().insert(UserId::new(who.subject()));
            res.extensions_mut().insert(who);
        }
        Flow::Continue(())
    }
}

impl Auth {
    /// Lets the request in as the key's identity, or answers 401 or 403.
    fn admit(&self, req: &mut Request, checked: Checked) -> Result<Identity, HttpError> {
        let Checked::Valid(stored) = checked else {
            return Err(unauthorized(Some("Invalid API key")));
        };
        self.require(req, &stored.scopes, &stored.name)?;
        req.extensions_mut()
            .insert(ApiKeyId::new(stored.id.as_str()));
        let identity = Identity(Who::ApiKey(stored));
        req.extensions_mut().insert(identity.clone());
        Ok(identity)
    }

    /// 403 unless the identity holds the scopes the path requires.
    fn require(&self, req: &Request, held: &[String], who: &str) -> Result<(), HttpError> {
        let required = self.required(req.uri().path());
        if let Some(missing) = required.iter().find(|s| !held.contains(s)) {
            tracing::info!(subject = %crate::Printable::new(who), scope = %missing, "credentials lack a scope; 403");
            return Err(forbidden(required));
        }
        Ok(())
    }

    /// Lets the request in as someone a JWT or the external service vouched for.
    #[cfg_attr(not(any(feature = "jwt", feature = "external-auth")), allow(dead_code))]
    fn admit_vouched(
        &self,
        req: &mut Request,
        method: AuthMethod,
        principal: Arc<Principal>,
    ) -> Result<Identity, HttpError> {
        self.require(req, &principal.scopes, &principal.subject)?;
        if !principal.subject.is_empty() {
            req.extensions_mut()
                .insert(UserId::new(principal.subject.as_str()));
        }
        let identity = Identity(Who::Vouched(method, principal));
        req.extensions_mut().insert(identity.clone());
        Ok(identity)
    }

    #[cfg(feature = "jwt")]
    fn admit_token(
        &self,
        req: &mut Request,
        decided: Result<Arc<Principal>, jwt::Failure>,
    ) -> Result<Identity, HttpError> {
        match decided {
            Ok(principal) => self.admit_vouched(req, AuthMethod::Jwt, principal),
            Err(jwt::Failure::Invalid(detail)) => Err(unauthorized(Some(detail))),
            Err(jwt::Failure::Unavailable(err)) => Err(unavailable("the JWKS URL", &err)),
        }
    }

    #[cfg(feature = "external-auth")]
    fn admit_external(
        &self,
        req: &mut Request,
        decision: external::Decision,
    ) -> Result<Identity, HttpError> {
        match decision {
            external::Decision::Allow(principal, headers) => {
                for (name, value) in headers.iter() {
                    req.headers_mut().append(name.clone(), value.clone());
                }
                self.admit_vouched(req, AuthMethod::External, principal)
            }
            external::Decision::Deny(status, challenge) => {
                let (detail, default) = if status == StatusCode::FORBIDDEN {
                    ("Not enough permissions", None)
                } else {
                    ("Not authenticated", Some("Bearer"))
                };
                let err = HttpError::new(status, detail);
                let challenge = challenge.as_ref().and_then(|v| v.to_str().ok()).or(default);
                Err(match challenge {
                    Some(value) => err.with_header("www-authenticate", value),
                    None => err,
                })
            }
        }
    }
}
