//! [`Valid`]: constraints declared with `validator`'s derive, answered as pydantic's errors.

use axum::extract::{FromRequest, FromRequestParts};
use http::request::Parts;
use serde_json::{json, Value};
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::{Json, Path, Query, ValidationError, ValidationIssue};
use crate::Request;

/// An extractor whose value also meets the constraints its type declares with `validator`'s
/// derive (`#[validate(range(exclusive_min = 0))]`, `#[validate(length(max = 50))]`), like
/// FastAPI's `Path(gt=0)`, `Query(max_length=50)` and pydantic's `Field` constraints. A value
/// that breaks them gets pydantic's 422: `greater_than`, `greater_than_equal`, `less_than`,
/// `less_than_equal`, `string_too_short`, `string_too_long`, `too_short`, `too_long`, with
/// their `ctx`. Feature `validator`.
///
/// Constraints are checked once the value has its types, so a request with both a type error
/// and a broken constraint hears of the type error first (pydantic lists both).
///
/// ```
/// use callnext::extract::{Json, Valid};
/// use callnext::{Stack, TestClient};
/// use axum::{routing::post, Router};
/// use validator::Validate;
///
/// #[derive(serde::Deserialize, Validate)]
/// struct Item {
///     #[validate(length(min = 1, max = 50))]
///     name: String,
///     #[validate(range(exclusive_min = 0.0))]
///     price: f64,
/// }
///
/// async fn create(Valid(Json(item)): Valid<Json<Item>>) -> String { item.name }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let client = TestClient::new(Stack::new().service(Router::new().route("/items", post(create))));
/// let res = client.post("/items").json(&serde_json::json!({"name": "pen", "price": 0.0})).await;
/// assert_eq!(res.status(), 422);
/// assert_eq!(
///     res.text(),
///     r#"{"detail":[{"type":"greater_than","loc":["body","price"],"msg":"Input should be greater than 0.0","input":0.0,"ctx":{"gt":0.0}}]}"#
/// );
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Valid<E>(pub E);

impl<T, S> FromRequest<S> for Valid<Json<T>>
where
    T: serde::de::DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ValidationError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        check(&value, "body", None)?;
        Ok(Self(Json(value)))
    }
}

impl<T, S> FromRequestParts<S> for Valid<Query<T>>
where
    T: serde::de::DeserializeOwned + Validate + Send,
    S: Send + Sync,
{
    type Rejection = ValidationError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        let raw: serde_json::Map<String, Value> =
            form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), json!(v)))
                .collect();
        check(&value, "query", Some(&raw))?;
        Ok(Self(Query(value)))
    }
}

impl<T, S> FromRequestParts<S> for Valid<Path<T>>
where
    T: serde::de::DeserializeOwned + Validate + Send,
    S: Send + Sync,
{
    type Rejection = ValidationError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        let raw: serde_json::Map<String, Value> =
            axum::extract::RawPathParams::from_request_parts(parts, state)
                .await
                .map(|raw| raw.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect())
                .unwrap_or_default();
        check(&value, "path", Some(&raw))?;
        Ok(Self(Path(value)))
    }
}

/// Checks `value`; for query and path parameters, `raw` holds the text each came as, which
/// pydantic reports as the `input`.
fn check<T: Validate>(
    value: &T,
    source: &str,
    raw: Option<&serde_json::Map<String, Value>>,
) -> Result<(), ValidationError> {
    let Err(errors) = value.validate() else {
        return Ok(());
    };
    let mut issues = Vec::new();
    collect(&errors, &mut vec![json!(source)], &mut issues);
    if let Some(raw) = raw {
        for issue in &mut issues {
            if let Some(text) = issue
                .loc
                .get(1)
                .and_then(Value::as_str)
                .and_then(|k| raw.get(k))
            {
                issue.input = Some(text.clone());
            }
        }
    }
    Err(ValidationError::unprocessable(issues))
}

/// The issues of `errors`, fields by name (the order `validator` keeps is a hash map's).
fn collect(errors: &ValidationErrors, loc: &mut Vec<Value>, out: &mut Vec<ValidationIssue>) {
    let mut fields: Vec<_> = errors.errors().iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (field, kind) in fields {
        loc.push(json!(field));
        match kind {
            ValidationErrorsKind::Field(list) => {
                out.extend(list.iter().map(|e| issue(e, loc.clone())));
            }
            ValidationErrorsKind::Struct(inner) => collect(inner, loc, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    loc.push(json!(index));
                    collect(inner, loc, out);
                    loc.pop();
                }
            }
        }
        loc.pop();
    }
}

/// "1 character", "3 characters".
fn plural(n: &Value, one: &str) -> String {
    if n.as_u64() == Some(1) {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// One broken constraint as pydantic words it.
fn issue(err: &validator::ValidationError, loc: Vec<Value>) -> ValidationIssue {
    let param = |name: &str| err.params.get(name).cloned();
    let input = param("value").unwrap_or(Value::Null);
    let number = input.as_f64();
    let with = |kind: &'static str, msg: String, ctx: Value| {
        ValidationIssue {
            ctx: Some(ctx),
            ..ValidationIssue::new(kind, loc.clone(), msg)
        }
        .input(input.clone())
    };
    match err.code.as_ref() {
        "range" => {
            let crossed = |bound: &str, broken: fn(f64, f64) -> bool| {
                param(bound)
                    .filter(|b| matches!((number, b.as_f64()), (Some(v), Some(b)) if broken(v, b)))
            };
            if let Some(b) = crossed("exclusive_min", |v, b| v <= b) {
                return with(
                    "greater_than",
                    format!("Input should be greater than {b}"),
                    json!({ "gt": b }),
                );
            }
            if let Some(b) = crossed("min", |v, b| v < b) {
                return with(
                    "greater_than_equal",
                    format!("Input should be greater than or equal to {b}"),
                    json!({ "ge": b }),
                );
            }
            if let Some(b) = crossed("exclusive_max", |v, b| v >= b) {
                return with(
                    "less_than",
                    format!("Input should be less than {b}"),
                    json!({ "lt": b }),
                );
            }
            if let Some(b) = param("max") {
                return with(
                    "less_than_equal",
                    format!("Input should be less than or equal to {b}"),
                    json!({ "le": b }),
                );
            }
        }
        "length" => {
            let (len, list) = match &input {
                Value::String(s) => (s.chars().count() as u64, false),
                Value::Array(items) => (items.len() as u64, true),
                Value::Object(map) => (map.len() as u64, true),
                _ => (0, false),
            };
            let min = param("min").or_else(|| param("equal"));
            let max = param("max").or_else(|| param("equal"));
            let short = min.filter(|m| m.as_u64().is_some_and(|m| len < m));
            let long = max.filter(|m| m.as_u64().is_some_and(|m| len > m));
            match (short, long, list) {
                (Some(m), _, false) => {
                    return with(
                        "string_too_short",
                        format!("String should have at least {}", plural(&m, "character")),
                        json!({ "min_length": m }),
                    )
                }
                (_, Some(m), false) => {
                    return with(
                        "string_too_long",
                        format!("String should have at most {}", plural(&m, "character")),
                        json!({ "max_length": m }),
                    )
                }
                (Some(m), _, true) => {
                    return with(
                        "too_short",
                        format!(
                            "List should have at least {} after validation, not {len}",
                            plural(&m, "item")
                        ),
                        json!({ "field_type": "List", "min_length": m, "actual_length": len }),
                    )
                }
                (_, Some(m), true) => {
                    return with(
                        "too_long",
                        format!(
                            "List should have at most {} after validation, not {len}",
                            plural(&m, "item")
                        ),
                        json!({ "field_type": "List", "max_length": m, "actual_length": len }),
                    )
                }
                _ => {}
            }
        }
        "email" => {
            return ValidationIssue::new("value_error", loc, "value is not a valid email address")
                .input(input)
        }
        "url" => {
            return ValidationIssue::new("url_parsing", loc, "Input should be a valid URL")
                .input(input)
        }
        "regex" => {
            // A `Pattern` names its pattern; `validator`'s own `regex` rule does not.
            return match param("pattern") {
                Some(Value::String(p)) => with(
                    "string_pattern_mismatch",
                    format!("String should match pattern '{p}'"),
                    json!({ "pattern": p }),
                ),
                _ => ValidationIssue::new(
                    "string_pattern_mismatch",
                    loc,
                    "String should match pattern",
                )
                .input(input),
            };
        }
        _ => {}
    }
    let message = err
        .message
        .as_deref()
        .map_or_else(|| err.code.to_string(), str::to_owned);
    ValidationIssue::new("value_error", loc, format!("Value error, {message}")).input(input)
}
