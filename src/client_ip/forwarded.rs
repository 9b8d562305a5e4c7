//! Which forwarding header trusted proxies write ([`ForwardedHeader`]), and whether they say
//! the client came over HTTPS ([`Secure`]).

#[allow(clippy::wildcard_imports)]
use super::*;

/// On a request that came over TLS: to callnext's server itself, or to a trusted proxy that
/// says so (`X-Forwarded-Proto: https`, or `proto=https` in `Forwarded`). Batteries read it to
/// send HSTS and to mark cookies `Secure`.
///
/// ```
/// use callnext::Secure;
///
/// fn over_tls(req: &callnext::Request) -> bool {
///     req.extensions().get::<Secure>().is_some()
/// }
/// # let _ = over_tls;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure;

/// Whether the proxy nearest to us says the client used https: the last `X-Forwarded-Proto`
/// value, or the `proto` of the last `Forwarded` element.
pub(crate) fn forwarded_https(headers: &HeaderMap, header: ForwardedHeader) -> bool {
    let last = |name: HeaderName| {
        headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .map(str::to_owned)
    };
    match header {
        ForwardedHeader::XForwardedFor => last(HeaderName::from_static("x-forwarded-proto"))
            .is_some_and(|p| p.eq_ignore_ascii_case("https")),
        ForwardedHeader::Forwarded => last(http::header::FORWARDED).is_some_and(|element| {
            element.split(';').any(|pair| {
                pair.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("proto")
                        && v.trim().trim_matches('"').eq_ignore_ascii_case("https")
                })
            })
        }),
    }
}

/// Which header the trusted proxies write the client's address into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, cloud load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    pub(super) fn name(self) -> HeaderName {
        match self {
            Self::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            Self::Forwarded => http::header::FORWARDED,
        }
    }
}

impl FromStr for ForwardedHeader {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(ConfigError::invalid(
                "forwarded_header",
                format!("expected `x-forwarded-for` or `forwarded`, got `{s}`"),
            )),
        }
    }
}
