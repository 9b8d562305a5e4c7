//! `[middleware.request_id]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::SetRequestId;
use crate::config::fields::header_name;
use crate::config::{FileError, MiddlewareSettings};
use crate::middleware::request_id;
use crate::Entry;

/// A `[middleware.request_id]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize, Default, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Invalid {
        #[default]
        Replace,
        Reject,
    }
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        header: String,
        invalid: Invalid,
        uuid_only: bool,
        error_body: bool,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                header: "x-request-id".to_owned(),
                invalid: Invalid::Replace,
                uuid_only: false,
                error_body: true,
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let header = header_name(settings, "header", &s.header)?;
    let on_invalid = match s.invalid {
        Invalid::Replace => request_id::OnInvalid::Replace,
        Invalid::Reject => request_id::OnInvalid::Reject,
    };
    Ok(Entry::hook(
        SetRequestId::new()
            .header(header)
            .on_invalid(on_invalid)
            .uuid_only(s.uuid_only)
            .in_error_body(s.error_body),
    ))
}
