//! [`Cors`]: cross-origin resource sharing as Starlette's `CORSMiddleware` answers it, within
//! what the Fetch standard allows, checked when it is built.
//!
//! - A request without `Origin` is not a CORS request: it passes untouched, no CORS headers.
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//!   here, before any later middleware (auth, rate limits) sees it: 200 `OK` with the allowed
//!   methods, the requested headers mirrored when all headers are allowed, `Max-Age`; or 400
//!   `{"detail":"Disallowed CORS origin, method, headers"}` naming what was refused.
//! - Other requests from an allowed origin get `Access-Control-Allow-Origin` (and
//!   `-Allow-Credentials`, `-Expose-Headers`) on every response, errors and early answers of
//!   later middlewares included. `Vary: Origin` is on every response when the answer depends
//!   on the origin (a list of origins, or credentials): on those to requests without `Origin`
//!   or from a refused one too, so that a cache cannot serve one origin's answer to another;
//!   merged into the response's `Vary`, never twice. A request with credentials
//!   (`Cookie` or `Authorization`) to a wildcard configuration gets its own origin back,
//!   never `*`.
//!
//! Written as a hook rather than on tower-http's `CorsLayer`, which adds headers to requests
//! without `Origin`, always varies on three headers, answers disallowed preflights with 200,
//! and panics on invalid settings instead of returning an error.
//!
//! ```
//! use callnext::middleware::Cors;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cors = Cors::builder().allow_origins(["https://app.example"]).build().unwrap();
//! let app = Router::new().route("/", get(|| async { "ok" }));
//! let client = TestClient::new(Stack::new().hook(cors).service(app));
//!
//! let res = client.get("/").header("origin", "https://app.example").await;
//! assert_eq!(res.header("access-control-allow-origin"), Some("https://app.example"));
//! assert_eq!(res.header("vary"), Some("Origin"));
//! // Not a CORS request: no CORS headers, but a cache must still tell origins apart.
//! let res = client.get("/").await;
//! assert_eq!(res.header("access-control-allow-origin"), None);
//! assert_eq!(res.header("vary"), Some("Origin"));
//! # });
//! ```
//!
//! With credentials, more methods and headers, and the mistakes it refuses:
//!
//! ```
//! use callnext::middleware::Cors;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cors = Cors::builder()
//!     .allow_origins(["https://app.example"])
//!     .allow_methods(["GET", "POST"])
//!     .allow_headers(["authorization", "content-type"])
//!     .allow_credentials(true)
//!     .max_age(Duration::from_secs(3600))
//!     .build()
//!     .unwrap();
//! let app = Router::new().route("/", get(|| async { "ok" }));
//! let client = TestClient::new(Stack::new().hook(cors).service(app));
//! let res = client
//!     .options("/")
//!     .header("origin", "https://app.example")
//!     .header("access-control-request-method", "POST")
//!     .header("access-control-request-headers", "authorization")
//!     .await;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
//! assert_eq!(res.header("access-control-max-age"), Some("3600"));
//!
//! let err = Cors::builder().allow_origins(["*"]).allow_credentials(true).build().unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "invalid `allow_origins`: `*` cannot be used with credentials; list the origins"
//! );
//! # });
//! ```

mod builder;
#[cfg(feature = "config")]
pub(crate) mod config;

use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

pub use self::builder::CorsBuilder;
use crate::{ConfigError, Flow, Hook, HttpError, Request, Response};

/// Headers a browser may send without their being allowed (the CORS-safelisted ones).
const SAFELISTED: [&str; 4] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
];

/// The same names as Starlette writes them in `Access-Control-Allow-Headers`.
const SAFELISTED_AS_WRITTEN: [&str; 4] = [
    "Accept",
    "Accept-Language",
    "Content-Language",
    "Content-Type",
];

/// Answers CORS; see the [module docs](self). Made by [`Cors::builder`].
#[derive(Debug, Clone)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    origin_regex: Option<regex_lite::Regex>,
    any_method: bool,
    methods: Vec<Method>,
    any_header: bool,
    headers: Vec<HeaderName>,
    credentials: bool,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

impl Cors {
    /// The settings, to [`build`](CorsBuilder::build).
    pub fn builder() -> CorsBuilder {
        CorsBuilder::default()
    }

    fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        self.any_origin
            || self.origins.iter().any(|o| o == origin)
            || self.origin_regex.as_ref().is_some_and(|regex| {
                origin
                    .to_str()
                    .is_ok_and(|o| !o.eq_ignore_ascii_case("null") && regex.is_match(o))
            })
    }

    /// Adds these to `Access-Control-Expose-Headers` (other batteries' headers).
    #[must_use]
    pub fn also_expose(mut self, names: &[HeaderName]) -> Self {
        let mut all: Vec<String> = self
            .expose
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(", ").map(str::to_owned).collect())
            .unwrap_or_default();
        for name in names {
            if !all.iter().any(|n| n == name.as_str()) {
                all.push(name.as_str().to_owned());
            }
        }
        self.expose = HeaderValue::from_str(&all.join(", ")).ok();
        self
    }

    fn preflight(&self, req: &Request, origin: &HeaderValue) -> Response {
        let mut failures = Vec::new();
        if !self.origin_allowed(origin) {
            failures.push("origin");
        }
        let method = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        if !self.any_method && !method.is_some_and(|m| self.methods.contains(&m)) {
            failures.push("method");
        }
        let requested = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if !self.any_header {
            let all_allowed = requested.and_then(|v| v.to_str().ok()).is_none_or(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .all(|h| {
                        let h = h.to_ascii_lowercase();
                        SAFELISTED.contains(&h.as_str())
                            || self.headers.iter().any(|a| a == h.as_str())
                    })
            });
            if !all_allowed {
                failures.push("headers");
            }
        }
        if !failures.is_empty() {
            let detail = format!("Disallowed CORS {}", failures.join(", "));
            tracing::debug!(%detail, "preflight refused");
            let mut res = axum::response::IntoResponse::into_response(HttpError::new(
                StatusCode::BAD_REQUEST,
                detail,
            ));
            // It answers for this origin only.
            merge_vary(&mut res);
            return res;
        }
        let mut res = Response::new(axum::body::Body::from("OK"));
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        let allow_headers = match requested {
            Some(requested) if self.any_header => requested.clone(),
            _ => self.allow_headers.clone(),
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        self.allow_origin(&mut res, origin, false);
        res
    }

    /// `Access-Control-Allow-Origin` (and credentials, exposed headers) for `origin`.
    fn allow_origin(&self, res: &mut Response, origin: &HeaderValue, credentialed: bool) {
        let echo = !self.any_origin || self.credentials || credentialed;
        let h = res.headers_mut();
        if echo {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        } else {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        if echo {
            merge_vary(res);
        }
    }
}

/// Adds `Origin` to the response's `Vary`, once, keeping what is there.
fn merge_vary(res: &mut Response) {
    if !res.headers().contains_key(header::VARY) {
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
        return;
    }
    let existing: Vec<String> = res
        .headers()
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if existing
        .iter()
        .any(|t| t == "*" || t.eq_ignore_ascii_case("origin"))
    {
        return;
    }
    let mut merged = existing;
    merged.push("Origin".to_owned());
    if let Ok(value) = HeaderValue::from_str(&merged.join(", ")) {
        res.headers_mut().insert(header::VARY, value);
    }
}

/// What the response side needs: the request's origin, if it is allowed, and whether the
/// request carried credentials.
#[derive(Debug)]
pub struct CorsState(Option<(HeaderValue, bool)>);

impl Hook for Cors {
    type State = CorsState;

    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new()
            .kind("cors")
            .cors()
            .answers_early()
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, CorsState> {
        let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
            return Flow::Continue(CorsState(None));
        };
        if crate::battery::is_preflight(req) {
            return Flow::Respond(self.preflight(req, &origin));
        }
        if !self.origin_allowed(&origin) {
            return Flow::Continue(CorsState(None));
        }
        let credentialed = req.headers().contains_key(header::COOKIE)
            || req.headers().contains_key(header::AUTHORIZATION);
        Flow::Continue(CorsState(Some((origin, credentialed))))
    }

    fn on_response<'a>(&'a self, state: CorsState, res: &'a mut Response) -> Flow<'a> {
        if let CorsState(Some((origin, credentialed))) = state {
            self.allow_origin(res, &origin, credentialed);
        } else if !self.any_origin || self.credentials {
            // No CORS headers here, but another origin's request to the same URL gets some: a
            // cache must not answer it with this response.
            merge_vary(res);
        }
        Flow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(builder: CorsBuilder) -> String {
        builder.build().unwrap_err().to_string()
    }

    #[test]
    fn mistakes_are_refused_when_built() {
        assert_eq!(
            err(Cors::builder().allow_origins(["null"])),
            "invalid `allow_origins`: `null` is refused: any sandboxed page or file can send `null`"
        );
        assert_eq!(
            err(Cors::builder().allow_origins(["app.example"])),
            "invalid `allow_origins`: `app.example` is not an origin: expected `scheme://host[:port]`"
        );
        assert_eq!(
            err(Cors::builder().allow_origins(["https://app.example/"])),
            "invalid `allow_origins`: `https://app.example/` is not an origin: expected `scheme://host[:port]` with no path or pattern"
        );
        assert_eq!(
            err(Cors::builder().allow_origins(["https://*.example.com"])),
            "invalid `allow_origins`: `https://*.example.com` is not an origin: expected `scheme://host[:port]` with no path or pattern"
        );
        assert_eq!(
            err(Cors::builder()
                .allow_origins(["https://a.example"])
                .allow_headers(["*"])
                .allow_credentials(true)),
            "invalid `allow_headers`: `*` cannot be used with credentials; list the headers"
        );
        assert_eq!(
            err(Cors::builder().allow_methods(["GET", "FETCH ME"])),
            "invalid `allow_methods`: `FETCH ME` is not an HTTP method"
        );
        assert!(Cors::builder()
            .allow_origins(["http://localhost:3000"])
            .build()
            .is_ok());
    }
}
