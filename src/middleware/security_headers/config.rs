//! `[middleware.security_headers]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::SecurityHeaders;
use crate::config::{FileError, MiddlewareSettings};
use crate::Entry;

/// A `[middleware.security_headers]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        preset: String,
        force: bool,
        hsts: String,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                preset: "api".to_owned(),
                force: false,
                hsts: String::new(),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let mut headers =
        SecurityHeaders::preset(&s.preset).map_err(|err| settings.error("preset", err))?;
    if !s.hsts.is_empty() {
        headers = headers
            .hsts(&s.hsts)
            .map_err(|err| settings.error("hsts", err))?;
    }
    Ok(Entry::hook(headers.force(s.force)))
}
