//! `[middleware.compression]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use crate::config::{FileError, MiddlewareSettings, Size};
use crate::Entry;

/// A `[middleware.compression]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        min_size: Size,
        gzip: bool,
        br: bool,
        zstd: bool,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                min_size: Size::from_bytes(1000),
                gzip: true,
                br: true,
                zstd: true,
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    {
        let compression = crate::middleware::Compression::new()
            .min_size(s.min_size.bytes())
            .map_err(|err| settings.error("min_size", err))?
            .gzip(s.gzip)
            .br(s.br)
            .zstd(s.zstd);
        Ok(compression.entry())
    }
}
