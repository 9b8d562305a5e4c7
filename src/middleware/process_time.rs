//! [`ProcessTime`]: how long the rest of the stack took, in a response header, as the FastAPI
//! seed's timing middleware writes it (`X-Process-Time: 0.012345678`, seconds).
//!
//! Its time runs from its own `on_request` to its own `on_response`: put it first to time the
//! whole stack. It is on every response, errors, panics and short-circuits of later entries
//! included.
//!
//! ```
//! use callnext::{middleware::ProcessTime, Stack, TestClient};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
//! let client = TestClient::new(Stack::new().hook(ProcessTime::new()).service(app));
//! let res = client.get("/").await;
//! let secs: f64 = res.header("x-process-time").unwrap().parse().unwrap();
//! assert!(secs >= 0.0);
//! # });
//! ```
//!
//! With another header name, under a name of its own in the stack:
//!
//! ```
//! use callnext::{middleware::ProcessTime, Entry, Stack, TestClient};
//! use http::HeaderName;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let timing = ProcessTime::new().header(HeaderName::from_static("x-response-time"));
//! let stack = Stack::new().push(Entry::hook(timing).named("timing"));
//! assert_eq!(stack.to_string(), "0 timing (hook)\n");
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
//! let res = TestClient::new(stack.service(app)).get("/nope").await;
//! assert_eq!(res.status(), 404);
//! assert!(res.header("x-response-time").is_some());
//! assert!(res.header("x-process-time").is_none());
//! # });
//! ```

use std::io::Write as _;
use std::time::Instant;

use http::{HeaderName, HeaderValue};

use crate::{Flow, Hook, Request, Response};

static X_PROCESS_TIME: HeaderName = HeaderName::from_static("x-process-time");

/// Sets a header to the seconds the rest of the stack took; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ProcessTime {
    header: HeaderName,
}

impl Default for ProcessTime {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessTime {
    /// Writes `X-Process-Time`.
    pub fn new() -> Self {
        Self {
            header: X_PROCESS_TIME.clone(),
        }
    }

    /// The header to write. Defaults to `x-process-time`.
    #[must_use]
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }
}

impl Hook for ProcessTime {
    type State = Instant;

    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a, Instant> {
        Flow::Continue(Instant::now())
    }

    fn on_response<'a>(&'a self, started: Instant, res: &'a mut Response) -> Flow<'a> {
        res.headers_mut()
            .insert(self.header.clone(), seconds(started.elapsed()));
        Flow::Continue(())
    }
}

/// Seconds as a plain decimal with nanosecond precision, formatted on the stack: integer
/// formatting is far cheaper than shortest-round-trip float formatting and never switches to an
/// exponent.
pub(crate) fn seconds(elapsed: std::time::Duration) -> HeaderValue {
    let mut buf = [0u8; 32];
    let mut rest = &mut buf[..];
    let _ = write!(rest, "{}.{:09}", elapsed.as_secs(), elapsed.subsec_nanos());
    let len = 32 - rest.len();
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("0"))
}
