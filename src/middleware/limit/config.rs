//! `[middleware.concurrency] and [middleware.body_limit]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::{BodyLimit, ConcurrencyLimit};
use crate::config::{Duration, FileError, MiddlewareSettings, Size};
use crate::Entry;

/// A `[middleware.concurrency]` table's entry.
pub(crate) fn concurrency_from_config(
    settings: &MiddlewareSettings<'_>,
) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        max: usize,
        queue: usize,
        retry_after: Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                max: 1000,
                queue: 0,
                retry_after: Duration::from_secs(1),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let limit = ConcurrencyLimit::new(s.max)
        .map_err(|err| settings.error("max", err))?
        .queue(s.queue)
        .retry_after(s.retry_after.get().as_secs());
    Ok(Entry::middleware(limit))
}

/// A `[middleware.body_limit]` table's entry.
pub(crate) fn body_limit_from_config(
    settings: &MiddlewareSettings<'_>,
) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        max: Size,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                max: Size::from_bytes(1_000_000),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let max = usize::try_from(s.max.bytes()).unwrap_or(usize::MAX);
    let limit = BodyLimit::new(max).map_err(|err| settings.error("max", err))?;
    Ok(Entry::hook(limit))
}
