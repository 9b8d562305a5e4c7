//! [`SetHeaders`]: custom headers on requests (before the rest of the stack) or responses
//! (after it, on every response: errors and early answers included), each set (replacing),
//! appended, or set only when absent.
//!
//! ```
//! use callnext::middleware::SetHeaders;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//! use http::{HeaderName, HeaderValue};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let headers = SetHeaders::new().response_set(
//!     HeaderName::from_static("x-service"),
//!     HeaderValue::from_static("orders"),
//! );
//! let app = Router::new().route("/", get(|| async { "ok" }));
//! let res = TestClient::new(Stack::new().hook(headers).service(app)).get("/nope").await;
//! assert_eq!(res.header("x-service"), Some("orders"));
//! # });
//! ```
//!
//! Appending, defaulting, and a header for the handler to read:
//!
//! ```
//! use callnext::middleware::SetHeaders;
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//! use http::{HeaderMap, HeaderName, HeaderValue};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let headers = SetHeaders::new()
//!     .request_set(HeaderName::from_static("x-region"), HeaderValue::from_static("eu"))
//!     .response_append(HeaderName::from_static("vary"), HeaderValue::from_static("x-region"))
//!     .response_if_absent(
//!         HeaderName::from_static("cache-control"),
//!         HeaderValue::from_static("no-cache"),
//!     );
//! let app = Router::new().route(
//!     "/",
//!     get(|h: HeaderMap| async move {
//!         ([("cache-control", "max-age=60"), ("vary", "accept")], h["x-region"].to_str().unwrap().to_owned())
//!     }),
//! );
//! let res = TestClient::new(Stack::new().hook(headers).service(app)).get("/").await;
//! assert_eq!(res.text(), "eu");
//! assert_eq!(res.header("cache-control"), Some("max-age=60"));
//! let vary: Vec<_> = res.headers().get_all("vary").iter().collect();
//! assert_eq!(vary, ["accept", "x-region"]);
//! # });
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{Flow, Hook, Request, Response};

/// How a header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Replace every value of the header.
    Set,
    /// Add a value, keeping the others.
    Append,
    /// Set only when the header is absent.
    IfAbsent,
}

/// Writes custom headers; see the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SetHeaders {
    request: Vec<(Mode, HeaderName, HeaderValue)>,
    response: Vec<(Mode, HeaderName, HeaderValue)>,
}

fn write(headers: &mut HeaderMap, ops: &[(Mode, HeaderName, HeaderValue)]) {
    for (mode, name, value) in ops {
        match mode {
            Mode::Set => {
                headers.insert(name.clone(), value.clone());
            }
            Mode::Append => {
                headers.append(name.clone(), value.clone());
            }
            Mode::IfAbsent => {
                if !headers.contains_key(name) {
                    headers.insert(name.clone(), value.clone());
                }
            }
        }
    }
}

impl SetHeaders {
    /// No headers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `name: value` on every request, in this `mode`, before the rest of the stack.
    pub fn request(mut self, mode: Mode, name: HeaderName, value: HeaderValue) -> Self {
        self.request.push((mode, name, value));
        self
    }

    /// Writes `name: value` on every response, in this `mode`.
    pub fn response(mut self, mode: Mode, name: HeaderName, value: HeaderValue) -> Self {
        self.response.push((mode, name, value));
        self
    }

    /// Sets a request header (replacing the client's).
    pub fn request_set(self, name: HeaderName, value: HeaderValue) -> Self {
        self.request(Mode::Set, name, value)
    }

    /// Adds a request header value.
    pub fn request_append(self, name: HeaderName, value: HeaderValue) -> Self {
        self.request(Mode::Append, name, value)
    }

    /// Sets a request header the client did not send.
    pub fn request_if_absent(self, name: HeaderName, value: HeaderValue) -> Self {
        self.request(Mode::IfAbsent, name, value)
    }

    /// Sets a response header (replacing the handler's).
    pub fn response_set(self, name: HeaderName, value: HeaderValue) -> Self {
        self.response(Mode::Set, name, value)
    }

    /// Adds a response header value.
    pub fn response_append(self, name: HeaderName, value: HeaderValue) -> Self {
        self.response(Mode::Append, name, value)
    }

    /// Sets a response header the handler did not set.
    pub fn response_if_absent(self, name: HeaderName, value: HeaderValue) -> Self {
        self.response(Mode::IfAbsent, name, value)
    }
}

impl Hook for SetHeaders {
    type State = ();

    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new().kind("set_header")
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a> {
        write(req.headers_mut(), &self.request);
        Flow::Continue(())
    }

    fn on_response<'a>(&'a self, (): (), res: &'a mut Response) -> Flow<'a> {
        write(res.headers_mut(), &self.response);
        Flow::Continue(())
    }
}
