//! [`SecurityHeaders`]: the response headers that tell browsers to be careful, in three
//! presets, and `Server`/`X-Powered-By` removed.
//!
//! - [`SecurityHeaders::api`] (the default), for JSON APIs that browsers never render:
//!   `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`,
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//!   `Cross-Origin-Resource-Policy: same-origin`, `Cache-Control: no-store`.
//! - [`SecurityHeaders::html`]: helmet 8's defaults, for pages.
//! - [`SecurityHeaders::strict`]: the OWASP Secure Headers Project's list (without
//!   `Clear-Site-Data`, which belongs on a logout response only: [`clear_site_data`]).
//!
//! `Strict-Transport-Security` is sent only on requests that came over TLS ([`Secure`]: to
//! this server, or to a trusted proxy saying https), never on plain HTTP, where it would be
//! ignored at best. A header the handler already set is kept unless [`SecurityHeaders::force`].
//!
//! ```
//! use callnext::middleware::SecurityHeaders;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = Router::new().route("/", get(|| async { "{}" }));
//! let client = TestClient::new(Stack::new().hook(SecurityHeaders::api()).service(app));
//! let res = client.get("/nope").await; // errors too
//! assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
//! assert_eq!(res.header("content-security-policy"), Some("default-src 'none'; frame-ancestors 'none'"));
//! assert_eq!(res.header("strict-transport-security"), None); // plain HTTP
//! # });
//! ```
//!
//! The helmet preset, overriding what the handler set, with a shorter HSTS:
//!
//! ```
//! use callnext::middleware::SecurityHeaders;
//! use callnext::{Secure, Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = Router::new().route("/", get(|| async { ([("x-frame-options", "ALLOWALL")], "<p>hi</p>") }));
//! let headers = SecurityHeaders::html().force(true).hsts("max-age=86400").unwrap();
//! let stack = Stack::new()
//!     .on_request("tls", |req: &mut callnext::Request| { req.extensions_mut().insert(Secure); })
//!     .hook(headers);
//! let res = TestClient::new(stack.service(app)).get("/").await;
//! assert_eq!(res.header("x-frame-options"), Some("SAMEORIGIN"));
//! assert_eq!(res.header("strict-transport-security"), Some("max-age=86400"));
//! # });
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

use http::header::{self, HeaderName, HeaderValue};

use crate::{ConfigError, Flow, Hook, Request, Response, Secure};

const HSTS_DEFAULT: &str = "max-age=31536000; includeSubDomains";

/// Sets the security headers of a preset; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct SecurityHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
    hsts: Option<HeaderValue>,
    force: bool,
    remove: Vec<HeaderName>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self::api()
    }
}

fn preset(pairs: &[(&'static str, &'static str)], hsts: bool) -> SecurityHeaders {
    SecurityHeaders {
        headers: pairs
            .iter()
            .map(|&(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect(),
        hsts: hsts.then(|| HeaderValue::from_static(HSTS_DEFAULT)),
        force: false,
        remove: vec![header::SERVER, HeaderName::from_static("x-powered-by")],
    }
}

impl SecurityHeaders {
    /// For JSON APIs: nothing may be rendered, framed, sniffed, cached or sent as referrer;
    /// HSTS over TLS.
    pub fn api() -> Self {
        preset(
            &[
                (
                    "content-security-policy",
                    "default-src 'none'; frame-ancestors 'none'",
                ),
                ("x-content-type-options", "nosniff"),
                ("referrer-policy", "no-referrer"),
                ("cross-origin-resource-policy", "same-origin"),
                ("cache-control", "no-store"),
            ],
            true,
        )
    }

    /// helmet 8's defaults, for HTML pages.
    pub fn html() -> Self {
        preset(
            &[
                (
                    "content-security-policy",
                    "default-src 'self';base-uri 'self';font-src 'self' https: data:;\
                     form-action 'self';frame-ancestors 'self';img-src 'self' data:;\
                     object-src 'none';script-src 'self';script-src-attr 'none';\
                     style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
                ),
                ("cross-origin-opener-policy", "same-origin"),
                ("cross-origin-resource-policy", "same-origin"),
                ("origin-agent-cluster", "?1"),
                ("referrer-policy", "no-referrer"),
                ("x-content-type-options", "nosniff"),
                ("x-dns-prefetch-control", "off"),
                ("x-download-options", "noopen"),
                ("x-frame-options", "SAMEORIGIN"),
                ("x-permitted-cross-domain-policies", "none"),
                ("x-xss-protection", "0"),
            ],
            true,
        )
    }

    /// The OWASP Secure Headers Project's recommendations (without `Clear-Site-Data`).
    pub fn strict() -> Self {
        preset(
            &[
                (
                    "content-security-policy",
                    "default-src 'self'; form-action 'self'; base-uri 'self'; \
                     object-src 'none'; frame-ancestors 'none'; upgrade-insecure-requests; \
                     block-all-mixed-content",
                ),
                ("x-frame-options", "deny"),
                ("x-content-type-options", "nosniff"),
                ("x-permitted-cross-domain-policies", "none"),
                ("referrer-policy", "no-referrer"),
                ("cross-origin-embedder-policy", "require-corp"),
                ("cross-origin-opener-policy", "same-origin"),
                ("cross-origin-resource-policy", "same-origin"),
                (
                    "permissions-policy",
                    "accelerometer=(), autoplay=(), camera=(), cross-origin-isolated=(), \
                     display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), \
                     gyroscope=(), keyboard-map=(), magnetometer=(), microphone=(), midi=(), \
                     payment=(), picture-in-picture=(), publickey-credentials-get=(), \
                     screen-wake-lock=(), sync-xhr=(self), usb=(), web-share=(), \
                     xr-spatial-tracking=(), clipboard-read=(), clipboard-write=(), \
                     gamepad=(), hid=(), idle-detection=(), interest-cohort=(), serial=(), \
                     unload=()",
                ),
                ("cache-control", "no-store, max-age=0"),
            ],
            true,
        )
    }

    /// A preset by name: `api`, `html` or `strict`.
    ///
    /// # Errors
    ///
    /// Another name.
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        match name {
            "api" => Ok(Self::api()),
            "html" => Ok(Self::html()),
            "strict" => Ok(Self::strict()),
            other => Err(ConfigError::invalid(
                "preset",
                format!("expected `api`, `html` or `strict`, got `{other}`"),
            )),
        }
    }

    /// Replace headers the handler set, instead of keeping them. Defaults to off.
    pub fn force(mut self, on: bool) -> Self {
        self.force = on;
        self
    }

    /// The `Strict-Transport-Security` value sent over TLS; `off` sends none.
    ///
    /// # Errors
    ///
    /// A value without `max-age=`, or not a header value.
    pub fn hsts(mut self, value: &str) -> Result<Self, ConfigError> {
        if value == "off" {
            self.hsts = None;
            return Ok(self);
        }
        if !value.to_ascii_lowercase().contains("max-age=") {
            return Err(ConfigError::invalid(
                "hsts",
                format!(
                    "expected a value with `max-age=`, such as `{HSTS_DEFAULT}`, got `{value}`"
                ),
            ));
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            ConfigError::invalid("hsts", format!("`{value}` is not a header value"))
        })?;
        self.hsts = Some(value);
        Ok(self)
    }

    /// Sets one more header (or replaces the preset's value).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name, value));
        self
    }

    /// Leaves a preset's header out.
    pub fn without(mut self, name: &HeaderName) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    fn put(&self, res: &mut Response, name: &HeaderName, value: &HeaderValue) {
        // One hash of the name, not two (contains_key, then insert).
        match res.headers_mut().entry(name) {
            http::header::Entry::Vacant(slot) => {
                slot.insert(value.clone());
            }
            http::header::Entry::Occupied(mut slot) if self.force => {
                slot.insert(value.clone());
            }
            http::header::Entry::Occupied(_) => {}
        }
    }
}

impl Hook for SecurityHeaders {
    /// Whether the request came over TLS.
    type State = bool;

    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new().kind("security_headers")
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, bool> {
        Flow::Continue(req.extensions().get::<Secure>().is_some())
    }

    fn on_response<'a>(&'a self, secure: bool, res: &'a mut Response) -> Flow<'a> {
        // The names to remove are seldom there: one pass over the few headers a response has
        // costs less than a hashed lookup of each.
        if res.headers().keys().any(|name| self.remove.contains(name)) {
            for name in &self.remove {
                res.headers_mut().remove(name);
            }
        }
        res.headers_mut().reserve(self.headers.len() + 1);
        for (name, value) in &self.headers {
            self.put(res, name, value);
        }
        if let (true, Some(hsts)) = (secure, &self.hsts) {
            self.put(res, &header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        Flow::Continue(())
    }
}

/// `Clear-Site-Data: "cache", "cookies", "storage"`, for a logout response (never on every
/// response: it wipes the browser's state for the site).
///
/// ```
/// let (name, value) = callnext::middleware::security_headers::clear_site_data();
/// assert_eq!(name, "clear-site-data");
/// assert_eq!(value, r#""cache", "cookies", "storage""#);
/// ```
pub fn clear_site_data() -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("clear-site-data"),
        HeaderValue::from_static(r#""cache", "cookies", "storage""#),
    )
}
