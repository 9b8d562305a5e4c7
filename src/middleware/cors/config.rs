//! `[middleware.cors]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use super::Cors;
use crate::config::{Duration, FileError, MiddlewareSettings};

/// A `[middleware.cors]` table's battery (the headers other batteries expose are added by
/// the stack that assembles them).
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Cors, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        allow_origins: Vec<String>,
        allow_origin_regex: String,
        allow_methods: Vec<String>,
        allow_headers: Vec<String>,
        expose_headers: Vec<String>,
        allow_credentials: bool,
        max_age: Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                allow_origins: Vec::new(),
                allow_origin_regex: String::new(),
                allow_methods: vec!["GET".to_owned()],
                allow_headers: Vec::new(),
                expose_headers: Vec::new(),
                allow_credentials: false,
                max_age: Duration::from_secs(600),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let mut cors = Cors::builder().allow_origins(&s.allow_origins);
    if !s.allow_origin_regex.is_empty() {
        cors = cors.allow_origin_regex(&s.allow_origin_regex);
    }
    let cors = cors
        .allow_methods(&s.allow_methods)
        .allow_headers(&s.allow_headers)
        .expose_headers(&s.expose_headers)
        .allow_credentials(s.allow_credentials)
        .max_age(s.max_age.get())
        .build()
        .map_err(|err| settings.built(&err))?;
    Ok(cors)
}
