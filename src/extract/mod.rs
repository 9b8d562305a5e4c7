//! Extractors whose rejections are FastAPI's: `422` with `{"detail": [{type, loc, msg, input}]}`.
//!
//! [`Path`], [`Query`] and [`Json`] stand where axum's extractors do; their rejections list
//! every invalid or missing field at once, with pydantic's types and messages, and they accept
//! what pydantic's lax mode accepts (`"42"` for an integer in a body, `"yes"` for a boolean in
//! a query). [`StrictJson`] answers a body without a JSON content type with 415 instead.

mod json;
mod lax;
#[cfg(feature = "validator")]
mod pattern;
mod query;
#[cfg(feature = "validator")]
mod valid;

pub use json::{Json, JsonWithoutContentType, StrictJson};
#[cfg(feature = "validator")]
pub use pattern::Pattern;
pub use query::Query;
#[cfg(feature = "validator")]
pub use valid::Valid;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, RawPathParams};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{json_response, Detail};
use crate::{HttpError, Request};

/// Typed path parameters; a value that does not parse gives FastAPI's 422.
///
/// ```
/// use callnext::extract::Path;
/// use callnext::{Stack, TestClient};
/// use axum::{routing::get, Router};
///
/// async fn read_item(Path(item_id): Path<i64>) -> String {
///     item_id.to_string()
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = Router::new().route("/items/{item_id}", get(read_item));
/// let client = TestClient::new(Stack::new().service(app));
/// assert_eq!(client.get("/items/7").await.text(), "7");
///
/// let res = client.get("/items/abc").await;
/// assert_eq!(res.status(), 422);
/// assert_eq!(
///     res.text(),
///     r#"{"detail":[{"type":"int_parsing","loc":["path","item_id"],"msg":"Input should be a valid integer, unable to parse string as an integer","input":"abc"}]}"#
/// );
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<T>(pub T);

/// The rejection of [`Path`] and [`Json`]: a FastAPI-shaped error response.
#[derive(Debug, Clone)]
pub struct ValidationError {
    status: StatusCode,
    detail: ValidationDetail,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum ValidationDetail {
    Issues(Vec<ValidationIssue>),
    Message(Value),
}

/// One entry of a 422's `detail` list, as pydantic writes it: `type`, `loc`, `msg`, `input`
/// (and `ctx` for some types), in that order.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationIssue {
    #[serde(rename = "type")]
    kind: &'static str,
    loc: Vec<Value>,
    msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ctx: Option<Value>,
}

impl ValidationIssue {
    fn new(kind: &'static str, loc: Vec<Value>, msg: impl Into<String>) -> Self {
        Self {
            kind,
            loc,
            msg: msg.into(),
            input: None,
            ctx: None,
        }
    }

    fn input(mut self, input: impl Into<Value>) -> Self {
        self.input = Some(input.into());
        self
    }

    /// The error type (`int_parsing`, `missing`, `json_invalid`, …).
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// Where the error is: `["path", "item_id"]`, `["body", "price"]`.
    pub fn loc(&self) -> &[Value] {
        &self.loc
    }

    /// The message.
    pub fn msg(&self) -> &str {
        &self.msg
    }
}

impl ValidationError {
    fn unprocessable(issues: Vec<ValidationIssue>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: ValidationDetail::Issues(issues),
        }
    }

    fn from_http(err: &HttpError) -> Self {
        Self {
            status: err.status(),
            detail: ValidationDetail::Message(err.detail().clone()),
        }
    }

    /// The status code (422, or 413/415/400 for bodies that could not be read).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The validation issues of a 422 (empty for the other statuses).
    pub fn issues(&self) -> &[ValidationIssue] {
        match &self.detail {
            ValidationDetail::Issues(issues) => issues,
            ValidationDetail::Message(_) => &[],
        }
    }
}

impl IntoResponse for ValidationError {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status, "request rejected");
        let mut res = json_response(
            self.status,
            &Detail {
                detail: &self.detail,
            },
        );
        // Outer middlewares can tell the request was rejected, and why.
        res.extensions_mut().insert(self);
        res
    }
}

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ValidationError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => {
                let raw: Vec<(String, String)> = RawPathParams::from_request_parts(parts, state)
                    .await
                    .map(|raw| {
                        raw.iter()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                // What pydantic's lax mode accepts (`yes` for a boolean) passes.
                if let Some(value) = lax_path(&raw) {
                    return Ok(Self(value));
                }
                let keys: Vec<String> = raw.into_iter().map(|(k, _)| k).collect();
                Err(path_rejection(rejection, &keys))
            }
        }
    }
}

/// The parameters read as pydantic's lax mode reads them: as a struct of them, a single
/// value, or a tuple.
fn lax_path<T: DeserializeOwned>(raw: &[(String, String)]) -> Option<T> {
    let loc = [json!("path")];
    let source = lax::Source::Params;
    let object: serde_json::Map<String, Value> =
        raw.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    if let Ok(value) = lax::from_value(Value::Object(object), &loc, source) {
        return Some(value);
    }
    match raw {
        [(_, one)] => lax::from_value(json!(one), &loc, source).ok(),
        _ => lax::from_value(raw.iter().map(|(_, v)| json!(v)).collect(), &loc, source).ok(),
    }
}

fn path_rejection(rejection: PathRejection, keys: &[String]) -> ValidationError {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(err) = rejection else {
        // A route without parameters used `Path`: a programming error, answered as axum does.
        tracing::error!(error = %rejection, "path extractor used on a route without parameters");
        return ValidationError::from_http(&HttpError::internal());
    };
    let (key, value, expected) = match err.into_kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => (key, value, expected_type),
        ErrorKind::ParseErrorAtIndex {
            index,
            value,
            expected_type,
        } => (
            keys.get(index).cloned().unwrap_or_default(),
            value,
            expected_type,
        ),
        ErrorKind::ParseError {
            value,
            expected_type,
        } => (
            keys.first().cloned().unwrap_or_default(),
            value,
            expected_type,
        ),
        ErrorKind::InvalidUtf8InPathParam { key } => {
            return ValidationError::unprocessable(vec![ValidationIssue::new(
                "string_unicode",
                vec![json!("path"), json!(key)],
                "Input should be a valid string, unable to parse raw data as a unicode string",
            )]);
        }
        ErrorKind::DeserializeError {
            key,
            value,
            message,
        } => {
            return ValidationError::unprocessable(vec![ValidationIssue::new(
                "value_error",
                vec![json!("path"), json!(key)],
                message,
            )
            .input(value)]);
        }
        other => {
            tracing::error!(error = %other, "path parameters do not fit the extractor's type");
            return ValidationError::from_http(&HttpError::internal());
        }
    };
    ValidationError::unprocessable(vec![parse_error(&key, &value, expected)])
}

/// FastAPI's (pydantic's) error for a path value that is not of the expected primitive type.
fn parse_error(key: &str, value: &str, expected: &str) -> ValidationIssue {
    let loc = vec![json!("path"), json!(key)];
    if let Some((min, max)) = int_bounds(expected) {
        // An integer that does not fit is a size error, not a parsing error.
        if value.parse::<i128>().is_ok()
            || (value.len() > 1
                && value
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit()))
        {
            return ValidationIssue::new(
                "int_parsing_size",
                loc,
                format!("Input should be an integer between {min} and {max}"),
            )
            .input(value);
        }
        return ValidationIssue::new(
            "int_parsing",
            loc,
            "Input should be a valid integer, unable to parse string as an integer",
        )
        .input(value);
    }
    let (kind, msg) = match expected {
        "f32" | "f64" => (
            "float_parsing",
            "Input should be a valid number, unable to parse string as a number",
        ),
        "bool" => (
            "bool_parsing",
            "Input should be a valid boolean, unable to interpret input",
        ),
        "char" => ("string_too_long", "String should have at most 1 character"),
        _ => ("value_error", "Input is not valid for this parameter"),
    };
    ValidationIssue::new(kind, loc, msg).input(value)
}

fn int_bounds(ty: &str) -> Option<(i128, u128)> {
    Some(match ty {
        "i8" => (i8::MIN.into(), i8::MAX as u128),
        "i16" => (i16::MIN.into(), i16::MAX as u128),
        "i32" => (i32::MIN.into(), i32::MAX as u128),
        "i64" => (i64::MIN.into(), i64::MAX as u128),
        "i128" => (i128::MIN, i128::MAX as u128),
        "isize" => (isize::MIN as i128, isize::MAX as u128),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        "u128" => (0, u128::MAX),
        "usize" => (0, usize::MAX as u128),
        _ => return None,
    })
}
