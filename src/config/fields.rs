//! What the batteries' configuration tables share: a choice among names, a header name,
//! one value or a list.

use http::HeaderName;
use serde::{Deserialize, Serialize};

use super::{FileError, MiddlewareSettings};

/// `value` as one of `options`, or the error "expected `a`, `b` or `c`, got `value`" at `key`.
pub(crate) fn choice<T: Copy>(
    settings: &MiddlewareSettings<'_>,
    key: &str,
    value: &str,
    options: &[(&str, T)],
) -> Result<T, FileError> {
    if let Some((_, chosen)) = options.iter().find(|(name, _)| *name == value) {
        return Ok(*chosen);
    }
    let names: Vec<String> = options
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    let expected = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(settings.error(key, format!("expected {expected}, got `{value}`")))
}

pub(crate) fn header_name(
    settings: &MiddlewareSettings<'_>,
    key: &str,
    value: &str,
) -> Result<HeaderName, FileError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| settings.error(key, format!("{value:?} is not a header name")))
}

/// One value or a list of them (`limit = "10/s"` or `limit = ["10/s", "1000/h"]`).
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub(crate) fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}
