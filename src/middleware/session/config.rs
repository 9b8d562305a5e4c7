//! `[middleware.session]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use crate::config::{Duration, FileError, MiddlewareSettings, Secret};
use crate::Entry;

/// A `[middleware.session]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    use crate::middleware::session::{MemoryStore, Sessions};
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        store: String,
        secret: Secret,
        old_secrets: Vec<Secret>,
        cookie: String,
        host_prefix: bool,
        cookie_max_age: Option<Duration>,
        cookie_path: String,
        cookie_domain: String,
        idle_timeout: Duration,
        absolute_timeout: Duration,
        max_sessions: u64,
        prefix: String,
        store_timeout: Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                store: "memory".to_owned(),
                secret: Secret::default(),
                old_secrets: Vec::new(),
                cookie: "id".to_owned(),
                host_prefix: false,
                cookie_max_age: None,
                cookie_path: "/".to_owned(),
                cookie_domain: String::new(),
                idle_timeout: Duration::from_secs(30 * 60),
                absolute_timeout: Duration::from_secs(8 * 3600),
                max_sessions: 100_000,
                prefix: "callnext:session".to_owned(),
                store_timeout: Duration::from_secs(1),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let secret = if s.secret.is_empty() {
        std::env::var("CALLNEXT_SESSION_SECRET").unwrap_or_default()
    } else {
        s.secret.expose().to_owned()
    };
    let mut builder = Sessions::builder()
        .secret(secret.as_bytes())
        .old_secrets(s.old_secrets.iter().map(Secret::expose))
        .cookie(s.cookie)
        .host_prefix(s.host_prefix)
        .idle_timeout(s.idle_timeout.get())
        .absolute_timeout(s.absolute_timeout.get())
        .store_timeout(s.store_timeout.get())
        .cookie_path(s.cookie_path);
    if let Some(max_age) = s.cookie_max_age {
        builder = builder.cookie_max_age(max_age.get());
    }
    if !s.cookie_domain.is_empty() {
        builder = builder.cookie_domain(s.cookie_domain);
    }
    let builder = match s.store.as_str() {
        "memory" => builder.store(MemoryStore::new(s.max_sessions)),
        #[cfg(feature = "redis")]
        url if crate::backends::is_redis_url(url) => {
            let redis = settings.redis("store", url)?;
            builder.store(crate::middleware::session::RedisStore::new(redis).prefix(s.prefix))
        }
        #[cfg(feature = "sql")]
        url if url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:") =>
        {
            // One store (one pool, one sweeper) per URL for every stack of the registry.
            let store = settings.shared_store(url, || {
                crate::middleware::session::SqlStore::open(url)
                    .map_err(|err| settings.error("store", err))
            })?;
            builder.store(store)
        }
        other => {
            return Err(settings.error(
                "store",
                format!(
                    "expected `memory`, a `redis://`, `postgres://` or `sqlite://` URL, got `{}`",
                    crate::redact::redact_urls(other)
                ),
            ))
        }
    };
    let sessions = builder.build().map_err(|err| settings.built(&err))?;
    Ok(Entry::hook(sessions))
}
