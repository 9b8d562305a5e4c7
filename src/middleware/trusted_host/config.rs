//! `[middleware.trusted_host]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::TrustedHost;
use crate::config::{FileError, MiddlewareSettings};
use crate::Entry;

/// A `[middleware.trusted_host]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        allowed_hosts: Vec<String>,
        www_redirect: bool,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                allowed_hosts: Vec::new(),
                www_redirect: true,
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let hosts = TrustedHost::builder()
        .allowed_hosts(s.allowed_hosts)
        .www_redirect(s.www_redirect)
        .build()
        .map_err(|err| settings.built(&err))?;
    Ok(Entry::hook(hosts))
}
