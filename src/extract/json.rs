//! [`Json`] and [`StrictJson`]: bodies read as FastAPI reads them, their errors as its 422s.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A JSON request body; invalid JSON or a body of the wrong shape gives FastAPI's 422.
///
/// The body is limited by axum's `DefaultBodyLimit` (2 MB unless configured); past it: 413.
///
/// ```
/// use callnext::extract::Json;
/// use callnext::{Stack, TestClient};
/// use axum::{routing::post, Router};
///
/// #[derive(serde::Deserialize)]
/// struct Item { name: String, price: f64 }
///
/// async fn create(Json(item): Json<Item>) -> String {
///     format!("{} {}", item.name, item.price)
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = Router::new().route("/items", post(create));
/// let client = TestClient::new(Stack::new().service(app));
/// let res = client.post("/items").json(&serde_json::json!({"name": "pen", "price": "x"})).await;
/// assert_eq!(res.status(), 422);
/// assert_eq!(res.json::<serde_json::Value>()["detail"][0]["loc"], serde_json::json!(["body", "price"]));
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ValidationError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = reads_as_json(&req);
        let bytes = body_bytes(req, state).await?;
        if !json {
            return Err(not_an_object(String::from_utf8_lossy(&bytes).into_owned()));
        }
        parse_json(&bytes).map(Json)
    }
}

/// `Option<Json<T>>`: no body (or a JSON `null`) is `None`, as FastAPI's `item: Item | None =
/// None`; a body that is there and invalid is the same 422 as [`Json`]'s.
///
/// ```
/// use callnext::extract::Json;
/// use callnext::{Stack, TestClient};
/// use axum::{routing::post, Router};
///
/// #[derive(serde::Deserialize)]
/// struct Item { name: String }
///
/// async fn create(item: Option<Json<Item>>) -> String {
///     item.map_or_else(|| "no item".to_owned(), |Json(item)| item.name)
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let client = TestClient::new(Stack::new().service(Router::new().route("/", post(create))));
/// assert_eq!(client.post("/").await.text(), "no item");
/// assert_eq!(client.post("/").json(&serde_json::json!({"name": "pen"})).await.text(), "pen");
/// let res = client.post("/").json(&serde_json::json!({"title": "pen"})).await;
/// assert_eq!(res.status(), 422);
/// assert_eq!(res.json::<serde_json::Value>()["detail"][0]["loc"], serde_json::json!(["body", "name"]));
/// # });
/// ```
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ValidationError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let json = reads_as_json(&req);
        let bytes = body_bytes(req, state).await?;
        let text = bytes.trim_ascii();
        if text.is_empty() || (json && text == b"null") {
            return Ok(None);
        }
        if !json {
            return Err(not_an_object(String::from_utf8_lossy(&bytes).into_owned()));
        }
        parse_json(&bytes).map(|value| Some(Json(value)))
    }
}

/// A JSON request body as [`Json`] reads it, but a body whose `Content-Type` is not JSON gets
/// `415 {"detail":"Expected request with \`Content-Type: application/json\`"}` (what HTTP
/// prefers; FastAPI answers 422).
///
/// ```
/// use callnext::extract::StrictJson;
/// use callnext::{Stack, TestClient};
/// use axum::{routing::post, Router};
///
/// async fn create(StrictJson(v): StrictJson<serde_json::Value>) -> String { v.to_string() }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let client = TestClient::new(Stack::new().service(Router::new().route("/", post(create))));
/// let res = client.post("/").header("content-type", "text/plain").body("{}").send().await;
/// assert_eq!(res.status(), 415);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrictJson<T>(pub T);

impl<T, S> FromRequest<S> for StrictJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ValidationError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ValidationError::from_http(&HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`",
            )));
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(StrictJson)
    }
}

/// The whole body; a body that cannot be read is the error that stopped it (413, or what a
/// middleware's body stream raised), else 400.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ValidationError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(err) => match crate::body::raised(&err) {
                // An HttpError a middleware's body stream ended with is that error.
                Some(raised) => ValidationError::from_http(raised),
                None if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ValidationError::from_http(&HttpError::payload_too_large())
                }
                None => ValidationError::from_http(&HttpError::bad_request(err.body_text())),
            },
            other => ValidationError::from_http(&HttpError::bad_request(other.body_text())),
        })
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationError> {
    // No body is a missing body (FastAPI reads an empty body as none).
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(missing_body());
    }
    // The common case: valid, deserialized once from the bytes.
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let first = match serde_path_to_error::deserialize(de) {
        Ok(value) => return Ok(value),
        Err(err) => err.into_inner(),
    };
    if first.is_syntax() || first.is_eof() {
        return Err(ValidationError::unprocessable(vec![ValidationIssue {
            ctx: Some(json!({ "error": first.to_string() })),
            ..ValidationIssue::new(
                "json_invalid",
                vec![json!("body"), json!(first.column().saturating_sub(1))],
                "JSON decode error",
            )
            .input(json!({}))
        }]));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|_| missing_body())?;
    if value.is_null() {
        return Err(missing_body());
    }
    // A struct can be read from a list (its fields in order); pydantic wants an object.
    if !value.is_object() {
        let wants_object = serde_path_to_error::deserialize::<_, T>(&json!({}))
            .err()
            .is_some_and(|err| err.inner().to_string().starts_with("missing field"));
        if wants_object {
            return Err(not_an_object(value));
        }
    }
    lax::from_value(value, &[json!("body")], lax::Source::Body)
        .map_err(ValidationError::unprocessable)
}

/// A body that is not an object where the type wants one.
fn not_an_object(input: impl Into<Value>) -> ValidationError {
    ValidationError::unprocessable(vec![ValidationIssue::new(
        "model_attributes_type",
        vec![json!("body")],
        "Input should be a valid dictionary or object to extract fields from",
    )
    .input(input)])
}

/// A body that is required and absent (`null` included): `missing` at `["body"]`.
fn missing_body() -> ValidationError {
    ValidationError::unprocessable(vec![ValidationIssue::new(
        "missing",
        vec![json!("body")],
        "Field required",
    )
    .input(Value::Null)])
}

/// Whether [`Json`] reads the request's body as JSON: it says so (`application/json`,
/// `application/*+json`), or it says nothing and the request carries
/// [`JsonWithoutContentType`]. Any other body is text that is not an object (FastAPI's
/// `strict_content_type`, its default).
fn reads_as_json(req: &Request) -> bool {
    match req.headers().get(http::header::CONTENT_TYPE) {
        Some(_) => is_json_content_type(req.headers()),
        None => req.extensions().get::<JsonWithoutContentType>().is_some(),
    }
}

/// Put on a request (in its extensions), its body is read as JSON by [`Json`] even without a
/// `Content-Type`: FastAPI's `strict_content_type=False`, for clients that send none.
///
/// Without it, as in FastAPI by default, such a body is not JSON: a page on another site can
/// send a request with a body and no `Content-Type` without a CORS preflight, so reading it as
/// JSON would let that page reach an API on `localhost` or behind a login cookie.
///
/// ```
/// use callnext::extract::{Json, JsonWithoutContentType};
/// use callnext::{Request, Stack, TestClient};
/// use axum::{routing::post, Router};
///
/// async fn echo(Json(v): Json<serde_json::Value>) -> String { v.to_string() }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = Router::new().route("/", post(echo));
/// let strict = TestClient::new(Stack::new().service(app.clone()));
/// assert_eq!(strict.post("/").body("{\"a\":1}").send().await.status(), 422);
///
/// let lax = Stack::new().on_request("lax-json", |req: &mut Request| {
///     req.extensions_mut().insert(JsonWithoutContentType);
/// });
/// let lax = TestClient::new(lax.service(app));
/// assert_eq!(lax.post("/").body("{\"a\":1}").send().await.text(), "{\"a\":1}");
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonWithoutContentType;

/// `application/json` or `application/*+json`, parameters ignored, case-insensitive.
fn is_json_content_type(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .get(subtype.len().saturating_sub(5)..)
                .is_some_and(|tail| tail.eq_ignore_ascii_case("+json")))
}
