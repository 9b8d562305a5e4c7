//! [`Identity`]: who a request is from, as auth found, for handlers and later middlewares.

#[allow(clippy::wildcard_imports)]
use super::*;

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// An API key.
    ApiKey,
    /// A JWT.
    Jwt,
    /// The external auth service.
    External,
}

/// Who a JWT or the external service vouched for.
#[derive(Debug)]
#[cfg_attr(not(any(feature = "jwt", feature = "external-auth")), allow(dead_code))]
pub(crate) struct Principal {
    pub(super) subject: String,
    pub(super) scopes: Vec<String>,
    /// A JWT's claims.
    pub(super) claims: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Who a request is from, as [`Auth`] found: a subject, the scopes it holds and how it was
/// authenticated. An extractor (a handler that takes it answers 401 when the request carries
/// none, e.g. on a public path), and in the request's extensions for later middlewares.
#[derive(Debug, Clone)]
pub struct Identity(pub(super) Who);

/// What the identity rests on (shared with the key cache: making one allocates nothing).
#[derive(Debug, Clone)]
pub(super) enum Who {
    ApiKey(Arc<StoredKey>),
    #[cfg_attr(not(any(feature = "jwt", feature = "external-auth")), allow(dead_code))]
    Vouched(AuthMethod, Arc<Principal>),
}

impl Identity {
    /// Who: the key's name for an API key, the `sub` claim of a JWT, the `X-Auth-User` the
    /// external service answered (empty when it named nobody).
    pub fn subject(&self) -> &str {
        match &self.0 {
            Who::ApiKey(key) => &key.name,
            Who::Vouched(_, p) => &p.subject,
        }
    }

    /// The scopes held: an API key's, a JWT's `scope` or `scp` claim, the external service's
    /// `X-Auth-Scopes`.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        let list = match &self.0 {
            Who::ApiKey(key) => &key.scopes,
            Who::Vouched(_, p) => &p.scopes,
        };
        list.iter().map(String::as_str)
    }

    /// A JWT's claims (all of them, as JSON), when the request came with one.
    pub fn claims(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        match &self.0 {
            Who::Vouched(_, p) => p.claims.as_ref(),
            Who::ApiKey(_) => None,
        }
    }

    /// Whether `scope` is held.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// How the request was authenticated.
    pub fn method(&self) -> AuthMethod {
        match &self.0 {
            Who::ApiKey(_) => AuthMethod::ApiKey,
            Who::Vouched(method, _) => *method,
        }
    }

    /// The public id of the API key, when one was used.
    pub fn key_id(&self) -> Option<&str> {
        match &self.0 {
            Who::ApiKey(key) => Some(&key.id),
            Who::Vouched(..) => None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or_else(|| unauthorized(None))
    }
}
