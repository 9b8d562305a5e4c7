//! Who a request is from, as an authentication middleware found: the extensions that later
//! batteries (the rate limiter's `KeyBy::User` and `KeyBy::ApiKey`, the access log) read.

use std::sync::Arc;

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
