//! The caller's key: who a request counts against, one definition for every battery that keeps
//! state per caller (the rate limiter's buckets, and a middleware of your own).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;

use crate::{ApiKeyId, ClientIp, Request, UserId};

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

impl fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip => f.write_str("Ip"),
            Self::ApiKey => f.write_str("ApiKey"),
            Self::User => f.write_str("User"),
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

/// How a battery keys a request: by [`KeyBy`], falling back to the client address (IPv6 grouped
/// by its prefix) when the request has no such key, an empty one, or one over 128 bytes.
///
/// ```
/// use callnext::battery::{CallerRule, KeyBy};
/// use callnext::{ClientIp, Request, UserId};
///
/// let rule = CallerRule::new(KeyBy::User, 64);
/// let mut req = Request::new(Default::default());
/// req.extensions_mut().insert(ClientIp("2001:db8::1".parse().unwrap()));
/// assert_eq!(rule.key(&req), "2001:db8::");
/// req.extensions_mut().insert(UserId::new("ann"));
/// assert_eq!(rule.key(&req), "u:616e6e");
/// ```
#[derive(Clone, Debug)]
pub struct CallerRule {
    by: KeyBy,
    ipv6_mask: u128,
}

impl CallerRule {
    /// Keys by `by`; addresses of IPv6 clients grouped by their first `ipv6_prefix` bits (128:
    /// each address alone; more counts as 128).
    pub fn new(by: KeyBy, ipv6_prefix: u8) -> Self {
        let ipv6_mask = match ipv6_prefix.min(128) {
            0 => 0,
            bits => u128::MAX << (128 - u32::from(bits)),
        };
        Self { by, ipv6_mask }
    }

    /// What requests are keyed by.
    pub fn by(&self) -> &KeyBy {
        &self.by
    }

    /// The request's caller as text, fit for a store's key: an address as an address (its
    /// group's first address for IPv6), anything else its kind (`k:`, `u:`, `h:`, `f:`) and
    /// its bytes in hex, so no character of the client's can end a key or a hash tag early.
    pub fn key(&self, req: &Request) -> String {
        self.caller(req).to_string()
    }

    /// Whether requests are keyed by an identity an authenticating middleware gives.
    pub(crate) fn by_identity(&self) -> bool {
        matches!(self.by, KeyBy::User | KeyBy::ApiKey)
    }

    pub(crate) fn caller(&self, req: &Request) -> Caller {
        let text = |tag: &str, value: &str| {
            (!value.is_empty() && value.len() <= MAX_KEY_LEN)
                .then(|| Caller::Text(format!("{tag}{value}").into_boxed_str()))
        };
        let keyed = match &self.by {
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
            Some(ClientIp(ip)) => self.ip(ip),
            // No address at all (a Unix socket without a trusted proxy): one caller, `::`.
            None => Caller::Ip(0),
        })
    }

    /// The caller an address is.
    pub(crate) fn ip(&self, ip: IpAddr) -> Caller {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Caller::Ip(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => Caller::Ip(u128::from(v6) & self.ipv6_mask),
        }
    }
}

/// A caller, as stores key it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// An address as 128 bits (IPv4 in its IPv6-mapped form), masked to its group.
    Ip(u128),
    /// A key of the application's, tagged with its kind (`k:`, `u:`, `h:`, `f:`).
    Text(Box<str>),
}

/// The hash of the key alone (no variant tag), so a table can rehash its keys without making
/// a `Caller` again.
impl std::hash::Hash for Caller {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Caller::Ip(ip) => ip.hash(state),
            Caller::Text(text) => text.hash(state),
        }
    }
}

/// An address as text, anything else hex-encoded after its kind.
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(bits) => {
                let v6 = std::net::Ipv6Addr::from(*bits);
                match v6.to_ipv4_mapped() {
                    Some(v4) => v4.fmt(f),
                    None => v6.fmt(f),
                }
            }
            Self::Text(text) => {
                let (kind, rest) = text.split_at(2);
                f.write_str(kind)?;
                rest.bytes().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ip: &str) -> Request {
        let mut req = Request::new(Default::default());
        req.extensions_mut().insert(ClientIp(ip.parse().unwrap()));
        req
    }

    #[test]
    fn addresses_are_grouped_and_mapped_forms_are_one_caller() {
        let rule = CallerRule::new(KeyBy::Ip, 64);
        assert_eq!(rule.key(&request("192.0.2.7")), "192.0.2.7");
        assert_eq!(rule.key(&request("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(
            rule.key(&request("2001:db8:1:2:aaaa::1")),
            rule.key(&request("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            rule.key(&request("2001:db8:1:2::1")),
            rule.key(&request("2001:db8:1:3::1"))
        );
        let each = CallerRule::new(KeyBy::Ip, 128);
        assert_ne!(
            each.key(&request("2001:db8::1")),
            each.key(&request("2001:db8::2"))
        );
    }

    #[test]
    fn a_missing_empty_or_overlong_key_falls_back_to_the_address() {
        let rule = CallerRule::new(KeyBy::Header(HeaderName::from_static("x-tenant")), 64);
        let mut req = request("192.0.2.7");
        assert_eq!(rule.key(&req), "192.0.2.7");
        req.headers_mut().insert("x-tenant", "".parse().unwrap());
        assert_eq!(rule.key(&req), "192.0.2.7");
        req.headers_mut()
            .insert("x-tenant", "a".repeat(129).parse().unwrap());
        assert_eq!(rule.key(&req), "192.0.2.7");
        req.headers_mut().insert("x-tenant", "a}b".parse().unwrap());
        assert_eq!(rule.key(&req), "h:617d62");
    }

    #[test]
    fn identities_are_keyed_by_kind() {
        let mut req = request("192.0.2.7");
        req.extensions_mut().insert(ApiKeyId::new("same"));
        req.extensions_mut().insert(UserId::new("same"));
        let key = CallerRule::new(KeyBy::ApiKey, 64).key(&req);
        let user = CallerRule::new(KeyBy::User, 64).key(&req);
        assert_ne!(key, user);
        assert!(CallerRule::new(KeyBy::User, 64).by_identity());
        assert!(!CallerRule::new(KeyBy::Ip, 64).by_identity());
    }
}
