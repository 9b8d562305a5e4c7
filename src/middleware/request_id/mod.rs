//! [`SetRequestId`]: one id per request, for correlating logs, errors and traces.
//!
//! Each request gets a UUIDv7 (time-ordered) unless it came with a valid id in `X-Request-ID`
//! (the header name is configurable). An incoming id is valid when it is 1 to 128 bytes of
//! `[A-Za-z0-9._:-]`, or, with [`SetRequestId::uuid_only`], a UUID; an invalid one is replaced
//! by a fresh id (the default) or answered with 400, and is never echoed or logged.
//!
//! The id is a [`RequestId`] in the request's extensions before any later middleware runs
//! (extract it in a handler), in the request header for code that reads headers, in the
//! request's tracing span (`request_id`), on every response (errors, panics and other
//! middlewares' early answers included), and next to `"detail"` in the JSON of errors callnext
//! renders.
//!
//! ```
//! use callnext::middleware::{RequestId, SetRequestId};
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let app = Router::new().route("/", get(|id: RequestId| async move { id.to_string() }));
//! let client = TestClient::new(Stack::new().hook(SetRequestId::new()).service(app));
//!
//! // A fresh UUIDv7, the same in the handler and on the response.
//! let res = client.get("/").await;
//! let id = res.header("x-request-id").unwrap().to_owned();
//! assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
//! assert_eq!(res.text(), id);
//!
//! // A valid incoming id is kept; errors carry it in their body too.
//! let res = client.get("/nope").header("x-request-id", "abc-123").await;
//! assert_eq!(res.header("x-request-id"), Some("abc-123"));
//! assert_eq!(res.text(), r#"{"detail":"Not Found","request_id":"abc-123"}"#);
//! # });
//! ```
//!
//! With another header, accepting only UUIDs and rejecting anything else:
//!
//! ```
//! use callnext::middleware::{request_id::OnInvalid, SetRequestId};
//! use callnext::{Stack, TestClient};
//! use axum::{routing::get, Router};
//! use http::HeaderName;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let ids = SetRequestId::new()
//!     .header(HeaderName::from_static("x-correlation-id"))
//!     .uuid_only(true)
//!     .on_invalid(OnInvalid::Reject);
//! let app = Router::new().route("/", get(|| async { "ok" }));
//! let client = TestClient::new(Stack::new().hook(ids).service(app));
//!
//! let res = client.get("/").header("x-correlation-id", "not-a-uuid").await;
//! assert_eq!(res.status(), 400);
//! assert!(res.text().starts_with(r#"{"detail":"Invalid X-Correlation-Id header","request_id":""#));
//! assert_ne!(res.header("x-correlation-id"), Some("not-a-uuid"));
//!
//! let uuid = "0192e4a4-3c1e-7cc2-9a55-7d3b0c0f1a2b";
//! let res = client.get("/").header("x-correlation-id", uuid).await;
//! assert_eq!(res.header("x-correlation-id"), Some(uuid));
//! # });
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};

use crate::error::RenderedError;
use crate::{Flow, Hook, HttpError, Request, Response};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming id accepted.
const MAX_LEN: usize = 128;

pub use crate::identity::RequestId;

/// What to do with an incoming id that is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnInvalid {
    /// Give the request a fresh id (the default).
    #[default]
    Replace,
    /// Answer 400 `{"detail":"Invalid X-Request-ID header"}` (with a fresh id on it).
    Reject,
}

/// Sets each request's id; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct SetRequestId {
    header: HeaderName,
    on_invalid: OnInvalid,
    uuid_only: bool,
    /// Whether the JSON of an error callnext rendered gains `"request_id"`.
    in_error_body: bool,
    /// `Invalid X-Request-ID header`, made once.
    invalid_detail: String,
}

impl Default for SetRequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl SetRequestId {
    /// `X-Request-ID`, any id of the allowed characters, invalid ones replaced.
    pub fn new() -> Self {
        Self {
            header: X_REQUEST_ID.clone(),
            on_invalid: OnInvalid::Replace,
            uuid_only: false,
            in_error_body: true,
            invalid_detail: invalid_detail(&X_REQUEST_ID),
        }
    }

    /// The header the id comes in and goes out in. Defaults to `x-request-id`.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.invalid_detail = invalid_detail(&name);
        self.header = name;
        self
    }

    /// What to do with an invalid incoming id. Defaults to [`OnInvalid::Replace`].
    pub fn on_invalid(mut self, on_invalid: OnInvalid) -> Self {
        self.on_invalid = on_invalid;
        self
    }

    /// Whether the JSON body of an error callnext renders (`{"detail":...}`: a 404, a 422, an
    /// `HttpError`) gains `"request_id"` beside `detail`, so a client can quote it. Turn it off
    /// to keep FastAPI's bodies exactly (the id stays in the header). Defaults to on.
    pub fn in_error_body(mut self, on: bool) -> Self {
        self.in_error_body = on;
        self
    }

    /// Accept only UUIDs (any version) as incoming ids. Defaults to off.
    pub fn uuid_only(mut self, on: bool) -> Self {
        self.uuid_only = on;
        self
    }

    fn valid(&self, value: &HeaderValue) -> bool {
        let bytes = value.as_bytes();
        if self.uuid_only {
            return uuid::Uuid::try_parse_ascii(bytes).is_ok();
        }
        !bytes.is_empty()
            && bytes.len() <= MAX_LEN
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    }
}

/// `Invalid X-Request-ID header`, in the header's usual capitalisation.
fn invalid_detail(name: &HeaderName) -> String {
    let mut title = String::with_capacity(name.as_str().len());
    let mut upper = true;
    for c in name.as_str().chars() {
        title.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    if title.eq_ignore_ascii_case("x-request-id") {
        title = "X-Request-ID".to_owned();
    }
    format!("Invalid {title} header")
}

/// A new UUIDv7 as a header value: time-ordered, later ids sorting after earlier ones of this
/// process even within one millisecond (a 12-bit counter after the time, RFC 9562 §6.2's first
/// method), then 62 random bits.
///
/// Put together from its parts rather than by `Uuid::now_v7`, whose context and 128-bit time
/// arithmetic were most of this battery's cost; the text is kept in the value's own allocation,
/// so the clones the request, its extension and the response take share it without another.
fn fresh() -> HeaderValue {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() * 1000 + u64::from(d.subsec_millis()));
    // The time in milliseconds, then the counter: the next stamp is now's, or one past the
    // last when that is later (a burst of over 4,096 a millisecond runs a little ahead).
    let now = ms << 12;
    let mut last = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    let random = uuid::Uuid::new_v4().into_bytes();
    // The counter's 12 bits (the version takes the high nibble of the first byte), then random
    // bytes of the v4 (not its bytes 6 and 8, which carry its version and variant).
    let mut tail = [0; 10];
    tail[0] = ((stamp >> 8) & 0x0f) as u8;
    tail[1] = (stamp & 0xff) as u8;
    tail[2..9].copy_from_slice(&random[9..]);
    tail[9] = random[0];
    let id = uuid::Builder::from_unix_timestamp_millis(stamp >> 12, &tail).into_uuid();
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).unwrap_or(HeaderValue::from_static("-"))
}

impl Hook for SetRequestId {
    type State = HeaderValue;

    fn capabilities(&self) -> crate::battery::Capabilities {
        crate::battery::Capabilities::new()
            .kind("request_id")
            .first()
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, HeaderValue> {
        let id = match req.headers().get(&self.header) {
            Some(incoming) if self.valid(incoming) => incoming.clone(),
            Some(_) if self.on_invalid == OnInvalid::Reject => {
                let id = fresh();
                let mut res = axum::response::IntoResponse::into_response(HttpError::bad_request(
                    self.invalid_detail.clone(),
                ));
                decorate(&self.header, &id, &mut res, self.in_error_body);
                return Flow::Respond(res);
            }
            _ => fresh(),
        };
        tracing::Span::current().record(
            "request_id",
            tracing::field::display(id.to_str().unwrap_or_default()),
        );
        req.headers_mut().insert(self.header.clone(), id.clone());
        req.extensions_mut().insert(RequestId::new(id.clone()));
        Flow::Continue(id)
    }

    fn on_response<'a>(&'a self, id: HeaderValue, res: &'a mut Response) -> Flow<'a> {
        decorate(&self.header, &id, res, self.in_error_body);
        Flow::Continue(())
    }
}

/// The id on a response: its header, and `"request_id"` in the JSON of an error callnext
/// rendered.
fn decorate(header: &HeaderName, id: &HeaderValue, res: &mut Response, in_body: bool) {
    if let Some(RenderedError(body)) = res.extensions().get::<RenderedError>().filter(|_| in_body) {
        // `{"detail":...}` + `,"request_id":"<id>"}`; the id's characters need no escaping
        // (incoming ids are checked, fresh ones are UUIDs).
        if body.last() == Some(&b'}') && !body.windows(13).any(|w| w == b"\"request_id\":") {
            let mut out = BytesMut::with_capacity(body.len() + id.len() + 16);
            out.put_slice(&body[..body.len() - 1]);
            out.put_slice(b",\"request_id\":\"");
            out.put_slice(id.as_bytes());
            out.put_slice(b"\"}");
            let out: Bytes = out.freeze();
            res.extensions_mut().insert(RenderedError(out.clone()));
            res.headers_mut().remove(http::header::CONTENT_LENGTH);
            *res.body_mut() = axum::body::Body::from(out);
        }
    }
    res.headers_mut().insert(header.clone(), id.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_uuid_v7s_of_now() {
        let id = fresh();
        let uuid = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        let (secs, _) = uuid.get_timestamp().unwrap().to_unix();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(secs.abs_diff(now) <= 60, "{secs} against {now}");
        assert_ne!(fresh(), fresh());
    }

    #[test]
    fn ids_are_checked_by_length_and_characters() {
        let ids = SetRequestId::new();
        let ok = |s: &str| ids.valid(&HeaderValue::from_str(s).unwrap());
        assert!(ok("abc-123_x.y:z"));
        assert!(ok(&"a".repeat(128)));
        assert!(!ok(&"a".repeat(129)));
        assert!(!ok(""));
        assert!(!ok("has space"));
        assert!(!ok("quote\"d"));
        assert!(!ok("<script>"));
        let uuids = SetRequestId::new().uuid_only(true);
        assert!(uuids.valid(&HeaderValue::from_static(
            "67e55044-10b1-426f-9247-bb680e5fe0c8"
        )));
        assert!(!uuids.valid(&HeaderValue::from_static("abc-123")));
    }

    #[test]
    fn the_invalid_detail_names_the_header() {
        assert_eq!(invalid_detail(&X_REQUEST_ID), "Invalid X-Request-ID header");
        assert_eq!(
            invalid_detail(&HeaderName::from_static("x-correlation-id")),
            "Invalid X-Correlation-Id header"
        );
    }
}
