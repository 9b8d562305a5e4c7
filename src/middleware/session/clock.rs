//! The session clock: milliseconds since the Unix epoch, advanced by tokio's clock, so a
//! paused test clock moves sessions towards their timeouts.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

struct Base {
    epoch_ms: u64,
    at: tokio::time::Instant,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| Base {
        epoch_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        at: tokio::time::Instant::now(),
    })
}

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    let base = base();
    base.epoch_ms + u64::try_from(base.at.elapsed().as_millis()).unwrap_or(u64::MAX)
}
