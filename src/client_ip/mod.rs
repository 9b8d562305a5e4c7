//! [`ClientIp`]: who is asking, as every battery reads it, and [`TrustedProxies`], the only way
//! a forwarding header is believed.
//!
//! The client address is the connection's peer address unless that peer is a trusted proxy;
//! then it is the rightmost address of the forwarding header that is not itself a trusted
//! proxy. Every proxy appends the address it saw to the right of the header, so the entries to
//! the right of the first untrusted address were written by proxies of yours, and everything to
//! its left was written by the client: the leftmost entry is never believed.
//!
//! ```
//! use std::net::IpAddr;
//! use callnext::{ClientIp, TrustedProxies};
//! use http::HeaderMap;
//!
//! let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
//! let mut headers = HeaderMap::new();
//! // The client claims 1.1.1.1; the proxy at 10.0.0.2 appended the address it really saw.
//! headers.insert("x-forwarded-for", "1.1.1.1, 203.0.113.7".parse().unwrap());
//!
//! let peer: IpAddr = "10.0.0.2".parse().unwrap();
//! assert_eq!(ClientIp::resolve(peer, &headers, &proxies).0.to_string(), "203.0.113.7");
//!
//! // Without trusted proxies the header is never read.
//! let direct: IpAddr = "198.51.100.9".parse().unwrap();
//! let none = TrustedProxies::none();
//! assert_eq!(ClientIp::resolve(direct, &headers, &none).0, direct);
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::{ConfigError, HttpError, Request};

mod forwarded;

pub(crate) use self::forwarded::forwarded_https;
pub use self::forwarded::{ForwardedHeader, Secure};

/// The client's address: the peer, or what a trusted proxy says the client was.
///
/// Known for every request served by callnext's server or by `axum::serve` with a
/// [`StackService`](crate::StackService) (see [`Stack::trusted_proxies`](crate::Stack::trusted_proxies)):
/// extract it in a handler, or read it with [`ClientIp::of`] in a middleware:
///
/// ```
/// use callnext::{ClientIp, Next, Request, Response};
///
/// async fn whoami(ClientIp(ip): ClientIp) -> String {
///     ip.to_string()
/// }
///
/// async fn log_client(req: Request, next: Next<'_>) -> Response {
///     if let Some(ip) = ClientIp::of(&req) {
///         tracing::info!(%ip, "request");
///     }
///     next.run(req).await
/// }
/// # let _ = (whoami, log_client);
/// ```
///
/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are given as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIp(pub IpAddr);

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The networks whose forwarding headers are believed. Empty by default: then no header is
/// ever read and [`ClientIp`] is the peer address.
///
/// Only the header the proxies really write may be read ([`TrustedProxies::header`]): a
/// header they pass through untouched is entirely the client's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
    /// Whether a peer on a Unix socket (a proxy on the same host) is trusted.
    unix: bool,
}

/// On a request that came over a Unix socket (callnext's server puts it there): it has no
/// peer IP address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FromUnixSocket;

impl TrustedProxies {
    /// No trusted proxy: the peer address is the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// These networks, reading `X-Forwarded-For`.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let nets = nets
            .into_iter()
            .map(|net| match net {
                // A mapped IPv4 network is matched against the IPv4 addresses it stands for.
                IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                    Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len().saturating_sub(96))
                        .unwrap_or(IpNet::V6(v6)),
                    None => IpNet::V6(v6),
                },
                v4 => v4,
            })
            .collect();
        Self {
            nets,
            header: ForwardedHeader::default(),
            unix: false,
        }
    }

    /// Parses CIDRs (`10.0.0.0/8`, `2001:db8::/32`), single addresses (`127.0.0.1`), or
    /// `unix`: a proxy connecting over the Unix socket the server listens on.
    ///
    /// # Errors
    ///
    /// An entry that is neither, named in the message:
    ///
    /// ```
    /// use callnext::TrustedProxies;
    ///
    /// let err = TrustedProxies::parse(["10.0.0.0/8", "10.0.0.300"]).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid `trusted_proxies`: `10.0.0.300` is not an IP address or CIDR network"
    /// );
    /// ```
    pub fn parse<I, S>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        let mut unix = false;
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry == "unix" {
                unix = true;
                continue;
            }
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(
                        "trusted_proxies",
                        format!("`{entry}` is not an IP address or CIDR network"),
                    )
                })?;
            nets.push(net);
        }
        Ok(Self {
            unix,
            ..Self::new(nets)
        })
    }

    /// Reads this header instead of `X-Forwarded-For`.
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// The header these proxies write.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether a Unix socket peer is trusted.
    pub(crate) fn trusts_unix(&self) -> bool {
        self.unix
    }

    /// Whether there is no trusted proxy.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && !self.unix
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

impl ClientIp {
    /// The client address of this request: the one a stack's trusted proxies gave (an
    /// extension), else the peer of axum's `ConnectInfo<SocketAddr>`; `None` when neither is
    /// there (a Unix socket without a trusted proxy, a service under plain hyper).
    pub fn of<B>(req: &http::Request<B>) -> Option<Self> {
        Self::from_extensions(req.extensions())
    }

    fn from_extensions(extensions: &http::Extensions) -> Option<Self> {
        if let Some(ip) = extensions.get::<ClientIp>() {
            return Some(*ip);
        }
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| Self(peer.ip().to_canonical()))
    }

    /// The client address of a request from `peer` with these headers.
    ///
    /// When `peer` is trusted, the forwarding header's entries are read from the right: the
    /// first address that is not a trusted proxy is the client. An entry that is not an
    /// address (`unknown`, an obfuscated identifier, garbage) ends the walk: the client is
    /// then the trusted proxy that wrote it, never an address further left, which the client
    /// could have chosen. If every entry is trusted, the leftmost is the client.
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> Self {
        let peer = peer.to_canonical();
        if trusted.is_empty() || !trusted.contains(peer) {
            return Self(peer);
        }
        Self(Self::walk(peer, headers, trusted))
    }

    /// For a request over a Unix socket: the forwarding header's client when `unix` is
    /// trusted; otherwise (or with no usable header) none.
    pub(crate) fn resolve_unix(headers: &HeaderMap, trusted: &TrustedProxies) -> Option<Self> {
        const NONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        if !trusted.unix {
            return None;
        }
        let ip = Self::walk(NONE, headers, trusted);
        (ip != NONE).then_some(Self(ip))
    }

    fn walk(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
        let mut client = peer;
        let values: Vec<&[u8]> = headers
            .get_all(trusted.header.name())
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect();
        // The entries of all header lines, in order, read from the right.
        for value in values.iter().rev() {
            let Ok(value) = std::str::from_utf8(value) else {
                return client;
            };
            for entry in value.rsplit(',') {
                let parsed = match trusted.header {
                    ForwardedHeader::XForwardedFor => parse_address(entry),
                    ForwardedHeader::Forwarded => forwarded_for(entry).and_then(parse_address),
                };
                let Some(ip) = parsed else {
                    return client;
                };
                client = ip;
                if !trusted.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// The `for=` parameter of one `Forwarded` element (`for=1.2.3.4;proto=https;by=...`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then_some(value)
    })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`,
/// optionally in double quotes.
fn parse_address(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    let raw = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let ip = IpAddr::from_str(raw)
        .ok()
        .or_else(|| SocketAddr::from_str(raw).ok().map(|s| s.ip()))
        .or_else(|| {
            raw.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| IpAddr::from_str(r).ok())
        })?;
    Some(ip.to_canonical())
}

/// In a handler: the request's [`ClientIp`], or the peer address of axum's `ConnectInfo` when
/// the stack did not set one; a 500 when neither is there (served by plain hyper).
impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, HttpError> {
        if let Some(ip) = Self::from_extensions(&parts.extensions) {
            return Ok(ip);
        }
        tracing::error!(
            "ClientIp asked for, but the request has no peer address: serve it with callnext's \
             server or axum::serve"
        );
        Err(HttpError::internal())
    }
}

/// An address as text, kept on the stack: IPv4 digit by digit (the common case, without the
/// formatting machinery, which was a tenth of a traced request's cost under callgrind), IPv6
/// by its `Display`. For the access log and the traces.
pub(crate) struct AddressText {
    bytes: [u8; 45],
    len: usize,
}

impl AddressText {
    pub(crate) fn new(ip: IpAddr) -> Self {
        let mut bytes = [0u8; 45];
        let len = match ip {
            IpAddr::V4(v4) => {
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        bytes[len] = b'.';
                        len += 1;
                    }
                    if octet >= 100 {
                        bytes[len] = b'0' + octet / 100;
                        len += 1;
                    }
                    if octet >= 10 {
                        bytes[len] = b'0' + octet / 10 % 10;
                        len += 1;
                    }
                    bytes[len] = b'0' + octet % 10;
                    len += 1;
                }
                len
            }
            IpAddr::V6(v6) => {
                // At most 45 characters (`ffff:…:255.255.255.255`).
                let mut rest = &mut bytes[..];
                let _ = std::io::Write::write_fmt(&mut rest, format_args!("{v6}"));
                45 - rest.len()
            }
        };
        Self { bytes, len }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Whether the request's peer is one of `trusted` (a Unix socket peer when `unix` is trusted).
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) fn from_trusted_proxy(req: &Request, trusted: &crate::TrustedProxies) -> bool {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        trusted.contains(peer.ip())
    } else {
        req.extensions().get::<FromUnixSocket>().is_some() && trusted.trusts_unix()
    }
}

/// Puts the request's [`ClientIp`] on it when a trusted proxy says the client is someone else
/// than the peer; otherwise [`ClientIp::of`] reads the peer from `ConnectInfo` (one extension
/// fewer on every request).
pub(crate) fn set_client_ip(req: &mut Request, trusted: &crate::TrustedProxies) {
    if trusted.is_empty() || req.extensions().get::<ClientIp>().is_some() {
        return;
    }
    let (ip, from_proxy) =
        if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
            let peer = peer.ip().to_canonical();
            let from_proxy = trusted.contains(peer);
            let ip = ClientIp::resolve(peer, req.headers(), trusted);
            (Some(ip).filter(|ip| ip.0 != peer), from_proxy)
        } else if req.extensions().get::<FromUnixSocket>().is_some() {
            (
                ClientIp::resolve_unix(req.headers(), trusted),
                trusted.trusts_unix(),
            )
        } else {
            return;
        };
    if from_proxy && forwarded_https(req.headers(), trusted.forwarded_header()) {
        req.extensions_mut().insert(crate::Secure);
    }
    if let Some(ip) = ip {
        req.extensions_mut().insert(ip);
    }
}

#[cfg(test)]
mod tests;
