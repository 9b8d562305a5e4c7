//! The host a request asks for, read one way by every battery that cares (the trusted-host
//! check, the HTTPS redirect, the live page's loopback rule).

use http::header;

use crate::Request;

/// The authorities `req` names (RFC 9110 §7.2): its target's, when it has one (an
/// absolute-form target in HTTP/1.1, `:authority` in HTTP/2), then each `Host` field's. A
/// `Host` value that is not visible ASCII is given as `""`, which names no host.
///
/// A rule about the host holds for every one of them: a request whose target and `Host`
/// disagree, or with two `Host` fields, passes only if each of them passes.
///
/// ```
/// use callnext::battery::authorities;
///
/// let req = http::Request::get("http://a.example/x")
///     .header("host", "b.example:8080")
///     .body(callnext::Body::empty())
///     .unwrap();
/// assert_eq!(authorities(&req).collect::<Vec<_>>(), ["a.example", "b.example:8080"]);
/// ```
pub fn authorities(req: &Request) -> impl Iterator<Item = &str> {
    req.uri()
        .authority()
        .map(http::uri::Authority::as_str)
        .into_iter()
        .chain(
            req.headers()
                .get_all(header::HOST)
                .iter()
                .map(|v| v.to_str().unwrap_or("")),
        )
}

/// The host of an authority, as a rule compares it: without its port, an IPv6 literal
/// without its brackets, and without a final dot (`example.com.` is `example.com`). `None`
/// for what names no host: userinfo (`good.example@evil.example` names `evil.example` to
/// some and `good.example` to others), a port that is not digits, an empty host, or a
/// character no host name has.
///
/// ```
/// use callnext::battery::host_of;
///
/// assert_eq!(host_of("Example.com:8080"), Some("Example.com"));
/// assert_eq!(host_of("example.com."), Some("example.com"));
/// assert_eq!(host_of("[::1]:8000"), Some("::1"));
/// assert_eq!(host_of("good.example@evil.example"), None);
/// assert_eq!(host_of("example.com:http"), None);
/// assert_eq!(host_of("a/b"), None);
/// assert_eq!(host_of(""), None);
/// ```
pub fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return None;
            }
            let port = match rest {
                "" => None,
                rest => Some(rest.strip_prefix(':')?),
            };
            return port_ok(port).then_some(host);
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let name_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    (name_ok && port_ok(port)).then_some(host)
}

/// A port is digits, at most five of them (an empty port, `host:`, is allowed by RFC 3986).
fn port_ok(port: Option<&str>) -> bool {
    port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}
