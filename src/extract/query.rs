//! [`Query`]: typed query parameters with FastAPI's 422.

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::{lax, ValidationError};

/// Typed query parameters. Every invalid or missing parameter is in one 422, as FastAPI
/// writes it; values are read as pydantic's lax mode reads them (`1`, `yes`, `on` are `true`),
/// and a repeated parameter (`?tag=a&tag=b`) fills a list.
///
/// ```
/// use callnext::extract::Query;
/// use callnext::{Stack, TestClient};
/// use axum::{routing::get, Router};
///
/// #[derive(serde::Deserialize)]
/// struct Page { skip: u32, limit: u32, q: Option<String> }
///
/// async fn list(Query(page): Query<Page>) -> String {
///     format!("{} {} {:?}", page.skip, page.limit, page.q)
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let client = TestClient::new(Stack::new().service(Router::new().route("/items", get(list))));
/// assert_eq!(client.get("/items?skip=0&limit=10").await.text(), "0 10 None");
///
/// let res = client.get("/items?skip=x").await;
/// assert_eq!(res.status(), 422);
/// assert_eq!(
///     res.text(),
///     r#"{"detail":[{"type":"int_parsing","loc":["query","skip"],"msg":"Input should be a valid integer, unable to parse string as an integer","input":"x"},{"type":"missing","loc":["query","limit"],"msg":"Field required","input":null}]}"#
/// );
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ValidationError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        // The common case, decoded once: every parameter given and of its type.
        if let Ok(value) = serde_urlencoded::from_str::<T>(query) {
            return Ok(Self(value));
        }
        let mut params = Map::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = Value::String(value.into_owned());
            match params.get_mut(key.as_ref()) {
                Some(Value::Array(values)) => values.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
                None => {
                    params.insert(key.into_owned(), value);
                }
            }
        }
        lax::from_value(
            Value::Object(params),
            &[json!("query")],
            lax::Source::Params,
        )
        .map(Self)
        .map_err(ValidationError::unprocessable)
    }
}
