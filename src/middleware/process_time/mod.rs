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

#[cfg(feature = "config")]
pub(crate) mod config;

use std::time::{Duration, Instant};

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

    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new().kind("process_time")
    }

    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a, Instant> {
        Flow::Continue(Instant::now())
    }

    fn on_response<'a>(&'a self, started: Instant, res: &'a mut Response) -> Flow<'a> {
        res.headers_mut()
            .insert(self.header.clone(), seconds(started.elapsed()));
        Flow::Continue(())
    }
}

/// `elapsed` as a header value: seconds as a plain decimal with nanosecond precision
/// (`0.012345678`), as FastAPI's `str(time.monotonic() - start)` gives seconds, but never in
/// exponent form. The digits are written by hand into a stack buffer: `format!` costs several
/// hundred instructions per request here, this a few dozen.
///
/// ```
/// use callnext::middleware::process_time::seconds;
/// use std::time::Duration;
///
/// assert_eq!(seconds(Duration::from_nanos(12_345_678)), "0.012345678");
/// assert_eq!(seconds(Duration::new(3, 5)), "3.000000005");
/// ```
pub fn seconds(elapsed: Duration) -> HeaderValue {
    // u64 seconds: at most 20 digits, a dot and nine more.
    let mut buf = [0u8; 30];
    let mut at = buf.len();
    let mut nanos = elapsed.subsec_nanos();
    for _ in 0..9 {
        at -= 1;
        buf[at] = b'0' + (nanos % 10) as u8;
        nanos /= 10;
    }
    at -= 1;
    buf[at] = b'.';
    let mut secs = elapsed.as_secs();
    loop {
        at -= 1;
        buf[at] = b'0' + (secs % 10) as u8;
        secs /= 10;
        if secs == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buf[at..]).unwrap_or(HeaderValue::from_static("0"))
}
