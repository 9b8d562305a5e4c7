//! The batteries: production middlewares, one module each, written as [`Hook`]s wherever they
//! do not need to hold the rest of the stack.
//!
//! | battery | module | kind |
//! |---|---|---|
//! | `X-Process-Time`: seconds spent in the rest of the stack | [`process_time`] | hook |
//! | request id: UUIDv7 or a valid incoming id, everywhere | [`request_id`] | hook |
//! | CORS, as Starlette's `CORSMiddleware`, checked when built | [`cors`] | hook |
//! | security headers: `api`, `html` (helmet), `strict` (OWASP) presets, HSTS over TLS | [`security_headers`] | hook |
//! | custom headers: set, append or default, on requests or responses | [`set_header`] | hook |
//!
//! [`Hook`]: crate::Hook

pub mod cors;
pub mod process_time;
pub mod request_id;
pub mod security_headers;
pub mod set_header;

pub use cors::Cors;
pub use process_time::ProcessTime;
pub use request_id::{RequestId, SetRequestId};
pub use security_headers::SecurityHeaders;
pub use set_header::SetHeaders;
