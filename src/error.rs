//! Errors that are responses ([`HttpError`]), the configuration error ([`ConfigError`]), and the
//! one function that builds the 500 response ([`internal_error`]).

use std::fmt;

use axum::response::IntoResponse;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::Value;

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
///
/// It is one pointer wide (its parts are boxed), so `Result<T, HttpError>` stays small.
#[derive(Debug, Clone)]
#[must_use = "an HttpError does nothing until it is returned"]
pub struct HttpError(Box<Parts>);

#[derive(Debug, Clone)]
struct Parts {
    status: StatusCode,
    detail: Value,
    headers: HeaderMap,
}

impl HttpError {
    /// An error with `status` and a `detail` (a string, or any JSON value).
    pub fn new(status: StatusCode, detail: impl Into<Value>) -> Self {
        Self(Box::new(Parts {
            status,
            detail: detail.into(),
            headers: HeaderMap::new(),
        }))
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
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("invalid header name");
        let value = HeaderValue::try_from(value).expect("invalid header value");
        self.0.headers.append(name, value);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The detail as JSON.
    pub fn detail(&self) -> &Value {
        &self.0.detail
    }

    /// The extra headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }
}

/// `404: Item 99 not found`, as Starlette's `str(HTTPException(...))`: the status code, then
/// the detail (a string as it is, other JSON compact). Stable: logs and tests may match it.
///
/// ```
/// use callnext::HttpError;
///
/// assert_eq!(HttpError::not_found("Item 99 not found").to_string(), "404: Item 99 not found");
/// let err = HttpError::new(http::StatusCode::CONFLICT, serde_json::json!({"id": 7}));
/// assert_eq!(err.to_string(), r#"409: {"id":7}"#);
/// ```
impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0.status.as_u16();
        match &self.0.detail {
            Value::String(s) => write!(f, "{code}: {s}"),
            other => write!(f, "{code}: {other}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// FastAPI's error body: `{"detail": ...}`.
#[derive(Serialize)]
pub(crate) struct Detail<T> {
    pub(crate) detail: T,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let Parts {
            status,
            detail,
            headers,
        } = *self.0;
        let mut res = json_response(status, &Detail { detail: &detail });
        res.headers_mut().extend(headers.clone());
        // Outer middlewares can tell what was raised (Starlette's `except` around call_next).
        res.extensions_mut().insert(HttpError(Box::new(Parts {
            status,
            detail,
            headers,
        })));
        res
    }
}

/// The one 500 response: `{"detail":"Internal Server Error"}`. Panics, failing tower layers
/// and failing apps all answer with it.
pub(crate) fn internal_error() -> Response {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &Detail {
            detail: "Internal Server Error",
        },
    )
}

/// What debug mode shows of a panic as a page (see `finish::debug_page`).
#[derive(Debug, Clone)]
pub(crate) struct DebugPanicPage {
    pub(crate) entry: Box<str>,
    pub(crate) message: Box<str>,
    pub(crate) location: Option<Box<str>>,
}

/// The 500's body in debug mode.
#[derive(Serialize)]
pub(crate) struct DebugPanic<'a> {
    pub(crate) detail: &'static str,
    pub(crate) panic: &'a str,
    pub(crate) entry: &'a str,
    pub(crate) location: Option<&'a str>,
}

thread_local! {
    /// Where the last panic on this thread happened, when the location hook is installed.
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Where the panic just caught on this thread happened (`src/app.rs:12:5`), if
/// [`install_panic_location_hook`] was called.
pub(crate) fn take_panic_location() -> Option<String> {
    PANIC_LOCATION.with(|l| l.borrow_mut().take())
}

/// Installs a process-wide panic hook (keeping the one before it) that remembers each panic's
/// location for [`Stack::debug`](crate::Stack::debug) 500s. callnext never installs it by
/// itself; the binary does with `--debug`.
///
/// ```
/// callnext::install_panic_location_hook();
/// ```
pub fn install_panic_location_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(location) = info.location() {
            let text = format!(
                "{}:{}:{}",
                location.file(),
                location.line(),
                location.column()
            );
            PANIC_LOCATION.with(|l| *l.borrow_mut() = Some(text));
        }
        previous(info);
    }));
}

/// On the 500 a panic became: which entry panicked, and the panic's message, so an outer
/// middleware can tell (the client sees only `{"detail":"Internal Server Error"}`).
///
/// ```
/// use callnext::{Panicked, Stack, TestClient};
/// use axum::{routing::get, Router};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = Router::new().route("/", get(|| async { panic!("boom"); #[allow(unreachable_code)] "" }));
/// let res = TestClient::new(Stack::new().service(app)).get("/").await;
/// let panicked = res.extensions().get::<Panicked>().unwrap();
/// assert_eq!((panicked.entry(), panicked.message()), ("app", "boom"));
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    pub(crate) entry: Box<str>,
    pub(crate) message: Box<str>,
}

impl Panicked {
    /// The entry whose boundary caught it (`app` for the app).
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The panic's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// On an error response callnext rendered: its JSON body, so that a battery (the request id)
/// can add a field without reading the body back.
#[derive(Debug, Clone)]
pub(crate) struct RenderedError(pub(crate) bytes::Bytes);

/// A JSON response with `status`. The body types callnext serialises cannot fail; if one ever
/// did, the body would be empty rather than the request failing.
pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let bytes = bytes::Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut res = Response::new(axum::body::Body::from(bytes.clone()));
    res.extensions_mut().insert(RenderedError(bytes));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A stack (or a setting) that was configured wrongly; returned when it is built, never at
/// request time.
///
/// Opaque: [`ConfigError::kind`] says what went wrong, `Display` says it in one line.
///
/// ```
/// use callnext::{ConfigErrorKind, Stack};
///
/// async fn auth(req: callnext::Request, next: callnext::Next<'_>) -> callnext::Response {
///     next.run(req).await
/// }
///
/// let err = Stack::new().func(auth).func(auth).validate().unwrap_err();
/// assert_eq!(err.kind(), ConfigErrorKind::DuplicateName);
/// assert_eq!(
///     err.to_string(),
///     "two middlewares are named `auth`; give one another name with `Entry::named`"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    message: String,
    setting: Option<Box<str>>,
}

/// What kind of [`ConfigError`] it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A middleware was looked up by a name the stack does not have.
    UnknownMiddleware,
    /// A name that was looked up matches more than one middleware.
    AmbiguousMiddleware,
    /// Two entries of a stack have the same name.
    DuplicateName,
    /// An entry has a name callnext keeps for its own boundaries (`app`, `body`) or an empty one.
    ReservedName,
    /// A setting has a value it cannot take.
    InvalidSetting,
    /// A tower layer failed (panicked) while its service was built.
    LayerFailed,
    /// Two different stacks record into one metrics registry under the same stack name.
    MetricsConflict,
    /// The batteries' order breaks a rule of [`Stack::lint`](crate::Stack::lint), and the
    /// stack is [strict](crate::Stack::strict_order).
    OrderRule,
}

impl ConfigError {
    pub(crate) fn new(kind: ConfigErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            setting: None,
        }
    }

    pub(crate) fn invalid(setting: &str, reason: impl fmt::Display) -> Self {
        let mut err = Self::new(
            ConfigErrorKind::InvalidSetting,
            format!("invalid `{setting}`: {reason}"),
        );
        err.setting = Some(setting.into());
        err
    }

    /// What went wrong.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The setting that has a value it cannot take (a builder's, named as the configuration
    /// file's key), for an [`InvalidSetting`](ConfigErrorKind::InvalidSetting).
    ///
    /// ```
    /// use callnext::middleware::rate_limit::RateLimit;
    ///
    /// let err = RateLimit::builder().limit("1/minute").paths(["api"]).build().unwrap_err();
    /// assert_eq!(err.setting(), Some("paths"));
    /// ```
    pub fn setting(&self) -> Option<&str> {
        self.setting.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
