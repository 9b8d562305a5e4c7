//! The batteries as configuration kinds: each `[middleware.<name>]` table's keys, checked
//! into the battery's builder.

use http::HeaderName;
use serde::Deserialize;

use super::{FileError, MiddlewareSettings};
use crate::middleware::{request_id, ProcessTime, SetRequestId};
use crate::Entry;

type Factory = fn(&MiddlewareSettings<'_>) -> Result<Entry, FileError>;

/// Name, rank in the recommended order (DESIGN.md: request id first, then the access log,
/// CORS, security headers, timeout, concurrency, body limit, rate limits, sessions, auth,
/// compression), and factory.
pub(super) const BUILTIN: &[(&str, u32, Factory)] = &[
    ("request_id", 0, request_id),
    ("process_time", 15, process_time),
];

fn header_name(
    settings: &MiddlewareSettings<'_>,
    key: &str,
    value: &str,
) -> Result<HeaderName, FileError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| settings.error(key, format!("{value:?} is not a header name")))
}

fn process_time(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        header: String,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                header: "x-process-time".to_owned(),
            }
        }
    }
    let s: Settings = settings.parse()?;
    let header = header_name(settings, "header", &s.header)?;
    Ok(Entry::hook(ProcessTime::new().header(header)))
}

fn request_id(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Default, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Invalid {
        #[default]
        Replace,
        Reject,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        header: String,
        invalid: Invalid,
        uuid_only: bool,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                header: "x-request-id".to_owned(),
                invalid: Invalid::Replace,
                uuid_only: false,
            }
        }
    }
    let s: Settings = settings.parse()?;
    let header = header_name(settings, "header", &s.header)?;
    let on_invalid = match s.invalid {
        Invalid::Replace => request_id::OnInvalid::Replace,
        Invalid::Reject => request_id::OnInvalid::Reject,
    };
    Ok(Entry::hook(
        SetRequestId::new()
            .header(header)
            .on_invalid(on_invalid)
            .uuid_only(s.uuid_only),
    ))
}
