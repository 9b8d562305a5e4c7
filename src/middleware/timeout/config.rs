//! `[middleware.timeout]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::Timeout;
use crate::config::{Duration, FileError, MiddlewareSettings};
use crate::Entry;

/// A `[middleware.timeout]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        after: Duration,
        status: u16,
        retry_after: Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                after: Duration::from_secs(30),
                status: 503,
                retry_after: Duration::from_secs(1),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    if s.after.get().is_zero() {
        return Err(settings.error("after", "must be greater than zero"));
    }
    let status = http::StatusCode::from_u16(s.status)
        .map_err(|_| settings.error("status", format!("expected 503 or 504, got {}", s.status)))?;
    let timeout = Timeout::new(s.after.get())
        .status(status)
        .map_err(|err| settings.error("status", err))?
        .retry_after(s.retry_after.get());
    Ok(Entry::middleware(timeout))
}
