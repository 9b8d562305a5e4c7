//! `[middleware.process_time]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::ProcessTime;
use crate::config::fields::header_name;
use crate::config::{FileError, MiddlewareSettings};
use crate::Entry;

/// A `[middleware.process_time]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
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
    let s: Settings = settings.parse_shown()?;
    let header = header_name(settings, "header", &s.header)?;
    Ok(Entry::hook(ProcessTime::new().header(header)))
}
