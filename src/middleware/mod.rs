//! The batteries: production middlewares, one module each, written as [`Hook`]s wherever they
//! do not need to hold the rest of the stack.
//!
//! | battery | module | kind |
//! |---|---|---|
//! | `X-Process-Time`: seconds spent in the rest of the stack | [`process_time`] | hook |
//! | request id: UUIDv7 or a valid incoming id, everywhere | [`request_id`] | hook |
//! | access log: JSON, combined or common; file or stdout; never blocks a request | [`access_log`] | hook |
//! | CORS, as Starlette's `CORSMiddleware`, checked when built | [`cors`] | hook |
//! | timeout: cancel the rest after a time, 503 (or 504) with `Retry-After` | [`timeout`] | struct |
//! | concurrency limit: at most N inside, a bounded queue, 503 past it | [`limit`] | struct |
//! | body limit: 413 by `Content-Length` or mid-stream | [`limit`] | hook |
//! | rate limit: GCRA, several policies, memory or Redis, IETF headers | [`rate_limit`] | hook |
//! | sessions: signed id cookie, lazy load, compare-and-set, idle and absolute timeouts | [`session`] | hook |
//! | authentication: API keys in SQL, JWTs with JWKS, an external service; scopes; 401/403/503 | [`auth`] | hook |
//! | compression: gzip, br, zstd; never SSE; streams stay streamed (feature `compression`) | [`compression`] | tower |
//! | security headers: `api`, `html` (helmet), `strict` (OWASP) presets, HSTS over TLS | [`security_headers`] | hook |
//! | custom headers: set, append or default, on requests or responses | [`set_header`] | hook |
//! | trusted hosts: 400 for a host not served, as Starlette's `TrustedHostMiddleware` | [`trusted_host`] | hook |
//! | HTTPS redirect: 307 from plain HTTP, as Starlette's `HTTPSRedirectMiddleware` | [`https_redirect`] | hook |
//!
//! [`Hook`]: crate::Hook

pub mod access_log;
pub mod auth;
#[cfg(feature = "compression")]
pub mod compression;
pub mod cors;
pub mod https_redirect;
pub mod limit;
pub mod process_time;
pub mod rate_limit;
pub mod request_id;
pub mod security_headers;
pub mod session;
pub mod set_header;
pub mod timeout;
pub mod trusted_host;

pub use access_log::AccessLog;
pub use auth::Auth;
#[cfg(feature = "compression")]
pub use compression::Compression;
pub use cors::Cors;
pub use https_redirect::HttpsRedirect;
pub use process_time::ProcessTime;
pub use rate_limit::RateLimit;
pub use request_id::{RequestId, SetRequestId};
pub use security_headers::SecurityHeaders;
pub use session::Sessions;
pub use set_header::SetHeaders;
pub use timeout::Timeout;
pub use trusted_host::TrustedHost;
