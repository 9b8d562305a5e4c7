//! [`TrustedHost`]: requests for a host the application does not serve are refused, as
//! Starlette's `TrustedHostMiddleware` refuses them (a guard against Host-header attacks:
//! poisoned password-reset links, cache poisoning, DNS rebinding).
//!
//! A request passes when every authority it names (its target's, HTTP/2's `:authority`, each
//! `Host`; see [`authorities`]) is an allowed host: an exact name
//! (`example.com`), a wildcard for its subdomains (`*.example.com`, which does not cover
//! `example.com` itself), or `*` for any. Names compare without case, port or final dot.
//! Anything else is answered `400 {"detail":"Invalid host header"}`; a request for
//! `example.com` when only `www.example.com` is allowed is redirected there (307) unless
//! [`www_redirect`](TrustedHostBuilder::www_redirect) is off.
//!
//! ```
//! use callnext::middleware::TrustedHost;
//! use callnext::{Stack, TestClient};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let hosts = TrustedHost::builder()
//!     .allowed_hosts(["example.com", "*.example.com"])
//!     .build()
//!     .unwrap();
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
//! let client = TestClient::new(Stack::new().hook(hosts).service(app));
//!
//! assert_eq!(client.get("/").header("host", "api.example.com").await.status(), 200);
//! let refused = client.get("/").header("host", "evil.example").await;
//! assert_eq!(refused.status(), 400);
//! assert_eq!(refused.text(), r#"{"detail":"Invalid host header"}"#);
//! # });
//! ```
//!
//! Put it after the request id and the access log (so a refused host is logged with its id)
//! and before everything else that answers; the [linter](crate::Stack::lint) says so
//! (`trusted-host-outside`).

#[cfg(feature = "config")]
pub(crate) mod config;

use std::sync::Arc;

use http::{header, HeaderValue, StatusCode};

use crate::battery::{authorities, host_of, Capabilities};
use axum::response::IntoResponse;

use crate::{ConfigError, Flow, Hook, HttpError, Request, Response};

/// Refuses requests for hosts not allowed; see the [module docs](self). Made by
/// [`TrustedHost::builder`].
#[derive(Debug, Clone)]
pub struct TrustedHost {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// `*` was listed: every host passes.
    any: bool,
    patterns: Vec<Pattern>,
    www_redirect: bool,
}

/// One allowed host, lowercase.
#[derive(Debug)]
enum Pattern {
    /// `example.com`.
    Exact(String),
    /// `*.example.com`, kept as `.example.com`.
    Subdomains(String),
}

/// Settings of a [`TrustedHost`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TrustedHostBuilder {
    allowed_hosts: Vec<String>,
    www_redirect: bool,
}

impl TrustedHost {
    /// A builder with no allowed host yet (building it without any is an error).
    pub fn builder() -> TrustedHostBuilder {
        TrustedHostBuilder {
            allowed_hosts: Vec::new(),
            www_redirect: true,
        }
    }

    /// Whether `host` (a name as [`host_of`] gives it) is allowed.
    ///
    /// ```
    /// use callnext::middleware::TrustedHost;
    ///
    /// let hosts = TrustedHost::builder().allowed_hosts(["*.example.com"]).build().unwrap();
    /// assert!(hosts.allows("API.example.com"));
    /// assert!(!hosts.allows("example.com"));
    /// assert!(!hosts.allows("example.com.evil.example"));
    /// ```
    pub fn allows(&self, host: &str) -> bool {
        let shared = &self.shared;
        shared.any
            || shared.patterns.iter().any(|p| match p {
                Pattern::Exact(name) => host.eq_ignore_ascii_case(name),
                Pattern::Subdomains(suffix) => {
                    host.len() > suffix.len()
                        && host.is_char_boundary(host.len() - suffix.len())
                        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                }
            })
    }

    /// Whether `www.` + `host` is listed exactly (Starlette's condition for the redirect).
    fn www_listed(&self, host: &str) -> bool {
        self.shared.patterns.iter().any(|p| match p {
            Pattern::Exact(name) => name
                .strip_prefix("www.")
                .is_some_and(|rest| rest.eq_ignore_ascii_case(host)),
            Pattern::Subdomains(_) => false,
        })
    }

    /// The answer to a request that names a host not allowed: the redirect to `www.`, or 400.
    fn refuse(&self, req: &Request, redirect: bool) -> Response {
        if redirect {
            if let Some(authority) = authorities(req).next() {
                let scheme = if req.extensions().get::<crate::Secure>().is_some() {
                    "https"
                } else {
                    "http"
                };
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let location = format!("{scheme}://www.{authority}{path}");
                if let Ok(location) = HeaderValue::try_from(location) {
                    let mut res = Response::new(crate::Body::empty());
                    *res.status_mut() = StatusCode::TEMPORARY_REDIRECT;
                    res.headers_mut().insert(header::LOCATION, location);
                    return res;
                }
            }
        }
        tracing::debug!(
            host = ?authorities(req).map(crate::Printable::new).collect::<Vec<_>>(),
            "request for a host not allowed refused"
        );
        HttpError::new(StatusCode::BAD_REQUEST, "Invalid host header").into_response()
    }
}

impl TrustedHostBuilder {
    /// Adds allowed hosts: names (`example.com`, `127.0.0.1`, `::1`), wildcards for
    /// subdomains (`*.example.com`), or `*` for any host.
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Redirect (307) a request for `example.com` to `www.example.com` when only the latter
    /// is listed. Default true, as Starlette's.
    pub fn www_redirect(mut self, on: bool) -> Self {
        self.www_redirect = on;
        self
    }

    /// The check.
    ///
    /// # Errors
    ///
    /// No allowed host, an empty one, a `*` anywhere but alone or at the start of
    /// `*.example.com`, or a name with a port, a path or a character no host name has.
    ///
    /// ```
    /// use callnext::middleware::TrustedHost;
    ///
    /// let err = TrustedHost::builder().allowed_hosts(["example.*"]).build().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid `allowed_hosts`: `example.*`: a wildcard is `*` or `*.example.com`"
    /// );
    /// ```
    pub fn build(self) -> Result<TrustedHost, ConfigError> {
        let invalid = |reason: String| ConfigError::invalid("allowed_hosts", reason);
        if self.allowed_hosts.is_empty() {
            return Err(invalid(
                "list at least one host, or \"*\" for any".to_owned(),
            ));
        }
        let mut any = false;
        let mut patterns = Vec::with_capacity(self.allowed_hosts.len());
        for host in &self.allowed_hosts {
            let shown = crate::Printable::new(host);
            if host == "*" {
                any = true;
                continue;
            }
            let (name, wildcard) = match host.strip_prefix("*.") {
                Some(rest) => (rest, true),
                None => (host.as_str(), false),
            };
            if name.contains('*') {
                return Err(invalid(format!(
                    "`{shown}`: a wildcard is `*` or `*.example.com`"
                )));
            }
            // `[::1]` and `::1` alike; a name as `host_of` gives it.
            let bare = name
                .strip_prefix('[')
                .and_then(|v6| v6.strip_suffix(']'))
                .unwrap_or(name);
            let checked = if bare.contains(':') {
                bare.parse::<std::net::Ipv6Addr>().is_ok() && !wildcard
            } else {
                host_of(bare) == Some(bare.strip_suffix('.').unwrap_or(bare))
            };
            if !checked {
                return Err(invalid(format!(
                    "`{shown}`: expected a host name without port or path (`example.com`, `*.example.com`, `::1`)"
                )));
            }
            let name = bare.strip_suffix('.').unwrap_or(bare).to_ascii_lowercase();
            patterns.push(if wildcard {
                Pattern::Subdomains(format!(".{name}"))
            } else {
                Pattern::Exact(name)
            });
        }
        Ok(TrustedHost {
            shared: Arc::new(Shared {
                any,
                patterns,
                www_redirect: self.www_redirect,
            }),
        })
    }
}

impl Hook for TrustedHost {
    type State = ();

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .kind("trusted_host")
            .answers_early()
            .guards_host()
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, ()> {
        if self.shared.any {
            return Flow::Continue(());
        }
        let mut named = false;
        let mut allowed = true;
        let mut redirect = self.shared.www_redirect;
        for authority in authorities(req) {
            named = true;
            let host = host_of(authority);
            if !host.is_some_and(|h| self.allows(h)) {
                allowed = false;
                redirect &= host.is_some_and(|h| self.www_listed(h));
            }
        }
        if named && allowed {
            return Flow::Continue(());
        }
        Flow::Respond(self.refuse(req, named && redirect))
    }
}
