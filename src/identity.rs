//! Who a request is from and which request it is, as the batteries that found out put it in
//! its extensions: what later batteries (the rate limiter's `KeyBy::User` and
//! `KeyBy::ApiKey`, the access log, traces) read, without knowing which battery wrote it.

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::HeaderValue;

use crate::HttpError;

/// The authenticated user's id, put in the request's extensions by the middleware that
/// authenticated it.
///
/// ```
/// use callnext::UserId;
///
/// let mut req = http::Request::new(callnext::Body::empty());
/// req.extensions_mut().insert(UserId::new("ann"));
/// assert_eq!(req.extensions().get::<UserId>().unwrap().as_str(), "ann");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(Arc<str>);

/// The id of the API key a request presented (never the key itself), put in the request's
/// extensions by the middleware that checked it.
///
/// ```
/// use callnext::ApiKeyId;
///
/// let id = ApiKeyId::new("key_8f2a");
/// assert_eq!(id.to_string(), "key_8f2a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyId(Arc<str>);

macro_rules! id {
    ($t:ident) => {
        impl $t {
            /// The id.
            pub fn new(id: impl Into<Arc<str>>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id!(UserId);
id!(ApiKeyId);

/// A request's id, in its extensions (and an extractor for handlers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub(crate) fn new(id: HeaderValue) -> Self {
        Self(id)
    }

    /// The id as text (always ASCII).
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id of this request, if a [`SetRequestId`](crate::middleware::SetRequestId) ran before.
    pub fn of<B>(req: &http::Request<B>) -> Option<&Self> {
        req.extensions().get::<Self>()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// In a handler: the request's id; a 500 (logged) when no [`SetRequestId`](crate::middleware::SetRequestId) is in the stack.
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, HttpError> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!("RequestId asked for, but no SetRequestId is in the stack");
            HttpError::internal()
        })
    }
}
