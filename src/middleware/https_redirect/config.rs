//! `[middleware.https_redirect]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::HttpsRedirect;
use crate::config::{FileError, MiddlewareSettings};
use crate::Entry;

/// A `[middleware.https_redirect]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        exclude_paths: Vec<String>,
        permanent: bool,
    }
    let s: Settings = settings.parse_shown()?;
    let redirect = HttpsRedirect::builder()
        .exclude_paths(s.exclude_paths)
        .permanent(s.permanent)
        .build()
        .map_err(|err| settings.built(&err))?;
    Ok(Entry::hook(redirect))
}
