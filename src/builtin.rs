//! callnext's batteries as configuration kinds: the list [`Registry::new`] starts with,
//! assembled here, above both the configuration file's primitives (`config/`, which names no
//! battery) and the batteries (each of which reads its own table).

use http::HeaderName;

use crate::config::{BuiltinFactory, FileError, MiddlewareSettings, Registry};
use crate::middleware;
use crate::Entry;

/// Name, rank in the recommended order (DESIGN.md: request id first, then the access log, the
/// trusted-host check and the HTTPS redirect, CORS, security headers, timeout, concurrency, body limit, rate limits, sessions, auth,
/// compression), and factory.
const BUILTIN: &[(&str, u32, BuiltinFactory)] = &[
    ("request_id", 0, middleware::request_id::config::from_config),
    (
        "access_log",
        10,
        middleware::access_log::config::from_config,
    ),
    (
        "trusted_host",
        12,
        middleware::trusted_host::config::from_config,
    ),
    (
        "https_redirect",
        13,
        middleware::https_redirect::config::from_config,
    ),
    (
        "process_time",
        15,
        middleware::process_time::config::from_config,
    ),
    ("cors", 20, cors),
    (
        "security_headers",
        30,
        middleware::security_headers::config::from_config,
    ),
    (
        "set_header",
        35,
        middleware::set_header::config::from_config,
    ),
    ("timeout", 40, middleware::timeout::config::from_config),
    (
        "concurrency",
        50,
        middleware::limit::config::concurrency_from_config,
    ),
    (
        "body_limit",
        60,
        middleware::limit::config::body_limit_from_config,
    ),
    (
        "rate_limit",
        70,
        middleware::rate_limit::config::from_config,
    ),
    ("session", 80, middleware::session::config::from_config),
    ("auth", 90, middleware::auth::config::from_config),
    ("compression", 110, compression),
];

impl Registry {
    /// callnext's own kinds: the batteries of [`middleware`](crate::middleware).
    pub fn new() -> Self {
        Self::with_builtin(BUILTIN)
    }
}

/// CORS, exposing to scripts the headers the other batteries of the file set (the request id,
/// the rate limits' headers): the one kind that reads other kinds' tables.
fn cors(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    let cors = middleware::cors::config::from_config(settings)?;
    let tables_of = |kind: &'static str| {
        settings
            .config()
            .middleware
            .iter()
            .filter(move |(name, table)| {
                table.get("kind").and_then(|k| k.as_str()).unwrap_or(name) == kind
            })
            .map(|(_, table)| table)
    };
    let mut exposed = Vec::new();
    for table in tables_of("request_id") {
        let header = table
            .get("header")
            .and_then(|h| h.as_str())
            .unwrap_or("x-request-id");
        if let Ok(name) = HeaderName::from_bytes(header.as_bytes()) {
            exposed.push(name);
        }
    }
    for table in tables_of("rate_limit") {
        use middleware::rate_limit::Headers;
        let mode = match table.get("headers").and_then(|h| h.as_str()) {
            Some("legacy") => Headers::Legacy,
            Some("x") => Headers::X,
            Some("none") => Headers::None,
            _ => Headers::Draft,
        };
        for name in mode.names() {
            let name = HeaderName::from_static(name);
            if !exposed.contains(&name) {
                exposed.push(name);
            }
        }
    }
    Ok(Entry::hook(cors.also_expose(&exposed)))
}

#[cfg(feature = "compression")]
fn compression(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    middleware::compression::config::from_config(settings)
}

#[cfg(not(feature = "compression"))]
fn compression(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    Err(settings.error("", "compression needs callnext's `compression` feature"))
}
