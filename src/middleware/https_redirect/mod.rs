//! [`HttpsRedirect`]: a request that came over plain HTTP is redirected to HTTPS, as
//! Starlette's `HTTPSRedirectMiddleware` redirects it: `307` to the same URL with `https`
//! (`wss` for a WebSocket upgrade), the port dropped when it is 80 or 443 and kept otherwise.
//!
//! A request came over HTTPS when the server terminated TLS or a trusted proxy says so
//! (`X-Forwarded-Proto: https`, `Forwarded: proto=https`): the [`Secure`](crate::Secure)
//! marker, never a header a client could send itself. Paths can be left on plain HTTP (a
//! load balancer's health check, an ACME challenge).
//!
//! ```
//! use callnext::middleware::HttpsRedirect;
//! use callnext::{Stack, TestClient};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let redirect = HttpsRedirect::builder().exclude_paths(["/health/*"]).build().unwrap();
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hi" }))
//!     .route("/health/live", axum::routing::get(|| async { "ok" }));
//! let client = TestClient::new(Stack::new().hook(redirect).service(app));
//!
//! let res = client.get("/?q=1").header("host", "example.com:80").await;
//! assert_eq!(res.status(), 307);
//! assert_eq!(res.header("location"), Some("https://example.com/?q=1"));
//! let res = client.get("/").header("host", "example.com:8000").await;
//! assert_eq!(res.header("location"), Some("https://example.com:8000/"));
//! assert_eq!(client.get("/health/live").header("host", "example.com").await.status(), 200);
//! # });
//! ```
//!
//! Put it after [`TrustedHost`](crate::middleware::TrustedHost), so a redirect only ever
//! names a host the application serves; a request whose host is unreadable is answered
//! `400 {"detail":"Invalid host header"}`.

#[cfg(feature = "config")]
pub(crate) mod config;

use std::sync::Arc;

use axum::response::IntoResponse;
use http::{header, HeaderValue, StatusCode};

use crate::battery::{authorities, host_of, Capabilities, PathRules};
use crate::{ConfigError, Flow, Hook, HttpError, Request, Response};

/// Redirects plain-HTTP requests to HTTPS; see the [module docs](self). Made by
/// [`HttpsRedirect::builder`].
#[derive(Debug, Clone)]
pub struct HttpsRedirect {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    exclude: PathRules,
    status: StatusCode,
}

/// Settings of an [`HttpsRedirect`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct HttpsRedirectBuilder {
    exclude_paths: Vec<String>,
    permanent: bool,
}

impl HttpsRedirect {
    /// A builder: every path redirected, with 307.
    pub fn builder() -> HttpsRedirectBuilder {
        HttpsRedirectBuilder::default()
    }

    /// Every path redirected, with 307 (Starlette's behaviour).
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default settings are valid")
    }
}

impl Default for HttpsRedirect {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpsRedirectBuilder {
    /// Paths answered over plain HTTP as they are: exact paths, or prefixes ending in `/*`
    /// ([`PathRules`]).
    pub fn exclude_paths<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.exclude_paths
            .extend(paths.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Redirect with `308 Permanent Redirect` (cached by browsers) instead of `307`.
    pub fn permanent(mut self, on: bool) -> Self {
        self.permanent = on;
        self
    }

    /// The redirect.
    ///
    /// # Errors
    ///
    /// An excluded path that does not start with `/`.
    pub fn build(self) -> Result<HttpsRedirect, ConfigError> {
        let exclude = PathRules::parse(&self.exclude_paths)
            .map_err(|err| ConfigError::invalid("exclude_paths", err))?;
        Ok(HttpsRedirect {
            shared: Arc::new(Shared {
                exclude,
                status: if self.permanent {
                    StatusCode::PERMANENT_REDIRECT
                } else {
                    StatusCode::TEMPORARY_REDIRECT
                },
            }),
        })
    }
}

/// Where `req` goes over TLS: `https://` (`wss://` for a WebSocket upgrade), its host and its
/// port unless 80 or 443, its path and query. `None` when it names no readable host.
fn secure_url(req: &Request) -> Option<HeaderValue> {
    let authority = authorities(req).next()?;
    let host = host_of(authority)?;
    let port = authority
        .rsplit_once(':')
        .filter(|(_, port)| !port.contains(']'))
        .map(|(_, port)| port)
        .filter(|port| !port.is_empty() && *port != "80" && *port != "443");
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let scheme = if websocket { "wss" } else { "https" };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let url = match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    };
    HeaderValue::try_from(url).ok()
}

impl Hook for HttpsRedirect {
    type State = ();

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().kind("https_redirect").answers_early()
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, ()> {
        if req.extensions().get::<crate::Secure>().is_some()
            || (!self.shared.exclude.is_empty() && self.shared.exclude.matches(req.uri().path()))
        {
            return Flow::Continue(());
        }
        let Some(location) = secure_url(req) else {
            return Flow::Respond(
                HttpError::new(StatusCode::BAD_REQUEST, "Invalid host header").into_response(),
            );
        };
        let mut res = Response::new(crate::Body::empty());
        *res.status_mut() = self.shared.status;
        res.headers_mut().insert(header::LOCATION, location);
        Flow::Respond(res)
    }
}
