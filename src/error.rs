//! Errors that are responses: [`HttpError`] and the configuration [`ConfigError`].

use std::fmt;

use axum::response::IntoResponse;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::Response;

/// An HTTP error that renders as FastAPI-style JSON, `{"detail": ...}`, where it is raised.
///
/// Return it from a handler or a middleware (`Result<_, HttpError>`, so `?` works). It becomes a
/// response at that point, so every outer middleware still sees a response and can add headers
/// to it, exactly as FastAPI's `HTTPException` does.
///
/// ```
/// use callnext::HttpError;
/// use http::StatusCode;
///
/// let err = HttpError::new(StatusCode::NOT_FOUND, "Item 99 not found")
///     .with_header("x-reason", "gone");
/// assert_eq!(err.status(), StatusCode::NOT_FOUND);
/// assert_eq!(err.detail(), "Item 99 not found");
/// ```
#[derive(Debug, Clone)]
pub struct HttpError {
    status: StatusCode,
    detail: Value,
    headers: HeaderMap,
}

impl HttpError {
    /// An error with `status` and a `detail` (a string, or any JSON value).
    pub fn new(status: StatusCode, detail: impl Into<Value>) -> Self {
        Self {
            status,
            detail: detail.into(),
            headers: HeaderMap::new(),
        }
    }

    /// `404 Not Found` with `detail`.
    pub fn not_found(detail: impl Into<Value>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// `400 Bad Request` with `detail`.
    pub fn bad_request(detail: impl Into<Value>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// `401 Unauthorized` with `detail`.
    pub fn unauthorized(detail: impl Into<Value>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// `403 Forbidden` with `detail`.
    pub fn forbidden(detail: impl Into<Value>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// `413 Payload Too Large` with the detail `"Request body too large"`.
    pub fn payload_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
    }

    /// `500 Internal Server Error` with the detail `"Internal Server Error"`.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }

    /// Adds a header to the response this error renders as.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value: these are programmer errors,
    /// like an invalid literal.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("invalid header name");
        let value = HeaderValue::try_from(value).expect("invalid header value");
        self.headers.append(name, value);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail as JSON.
    pub fn detail(&self) -> &Value {
        &self.detail
    }

    /// The extra headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Value::String(s) => write!(f, "{}: {s}", self.status),
            other => write!(f, "{}: {other}", self.status),
        }
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut res = json_response(self.status, &json!({ "detail": self.detail }));
        res.headers_mut().extend(self.headers);
        res
    }
}

/// A JSON response with `status`; serialising a `Value` cannot fail.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut res = Response::new(axum::body::Body::from(bytes));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A stack that was configured wrongly; returned when it is built, never at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `insert_before`/`insert_after` named a middleware the stack does not have.
    UnknownMiddleware {
        /// The name that was looked up.
        name: String,
        /// The names the stack does have, in order.
        known: Vec<String>,
    },
    /// A name given to `insert_before`/`insert_after` matches more than one middleware.
    AmbiguousMiddleware {
        /// The name that was looked up.
        name: String,
        /// How many entries carry it.
        count: usize,
    },
    /// A setting has a value it cannot take.
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// Why the value is refused.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMiddleware { name, known } => write!(
                f,
                "no middleware named `{name}` in the stack (it has: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
            Self::AmbiguousMiddleware { name, count } => write!(
                f,
                "middleware name `{name}` is ambiguous: {count} entries carry it; give them distinct names"
            ),
            Self::InvalidSetting { setting, reason } => write!(f, "invalid `{setting}`: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}
