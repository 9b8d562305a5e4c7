//! `[middleware.rate_limit]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use crate::config::fields::{choice, header_name, OneOrMany};
use crate::config::{Duration, FileError, MiddlewareSettings};
use crate::Entry;

/// A `[middleware.rate_limit]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    use crate::middleware::rate_limit::{Headers, KeyBy, OnStoreError, RateLimit};
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        store: String,
        limit: OneOrMany<String>,
        burst: Option<OneOrMany<u64>>,
        key: String,
        paths: Vec<String>,
        on_store_error: String,
        headers: String,
        shadow: bool,
        cost: u64,
        count_preflights: bool,
        count_statuses: Vec<u16>,
        ipv6_prefix: u8,
        max_keys: usize,
        store_timeout: Duration,
        prefix: Option<String>,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                store: "memory".to_owned(),
                limit: OneOrMany::One("100/minute".to_owned()),
                burst: None,
                key: "ip".to_owned(),
                paths: Vec::new(),
                on_store_error: "open".to_owned(),
                headers: "draft".to_owned(),
                shadow: false,
                cost: 1,
                count_preflights: false,
                count_statuses: Vec::new(),
                ipv6_prefix: 64,
                max_keys: 100_000,
                store_timeout: Duration::from_millis(50),
                prefix: None,
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let limits = s.limit.into_vec();
    let bursts = match s.burst {
        None => vec![None; limits.len()],
        Some(OneOrMany::One(burst)) if limits.len() == 1 => vec![Some(burst)],
        Some(OneOrMany::One(_)) => {
            return Err(settings.error(
                "burst",
                "with several limits, give `burst` as a list, one per limit",
            ))
        }
        Some(OneOrMany::Many(bursts)) if bursts.len() == limits.len() => {
            bursts.into_iter().map(Some).collect()
        }
        Some(OneOrMany::Many(bursts)) => {
            return Err(settings.error(
                "burst",
                format!("{} bursts for {} limits", bursts.len(), limits.len()),
            ))
        }
    };
    let mut builder = RateLimit::builder().name(settings.name());
    for (limit, burst) in limits.into_iter().zip(bursts) {
        builder = builder.limit(limit);
        if let Some(burst) = burst {
            builder = builder.burst(burst);
        }
    }
    let key = match s.key.as_str() {
        "ip" => KeyBy::Ip,
        "api_key" => KeyBy::ApiKey,
        "user" => KeyBy::User,
        other => match other.strip_prefix("header:") {
            Some(name) => KeyBy::Header(header_name(settings, "key", name)?),
            None => {
                return Err(settings.error(
                    "key",
                    format!("expected `ip`, `api_key`, `user` or `header:<name>`, got `{other}`"),
                ))
            }
        },
    };
    let on_store_error = choice(
        settings,
        "on_store_error",
        &s.on_store_error,
        &[
            ("open", OnStoreError::Open),
            ("closed", OnStoreError::Closed),
            ("local", OnStoreError::Local),
        ],
    )?;
    let headers = choice(
        settings,
        "headers",
        &s.headers,
        &[
            ("draft", Headers::Draft),
            ("legacy", Headers::Legacy),
            ("x", Headers::X),
            ("none", Headers::None),
        ],
    )?;
    builder = builder
        .key(key)
        .paths(&s.paths)
        .on_store_error(on_store_error)
        .headers(headers)
        .shadow(s.shadow)
        .fixed_cost(s.cost)
        .count_preflights(s.count_preflights)
        .count_statuses(s.count_statuses)
        .ipv6_prefix(s.ipv6_prefix)
        .max_keys(s.max_keys)
        .store_timeout(s.store_timeout.get());
    if let Some(prefix) = s.prefix {
        builder = builder.prefix(prefix);
    }
    match s.store.as_str() {
        "memory" => {}
        url if crate::backends::is_redis_url(url) => {
            #[cfg(feature = "redis")]
            {
                builder = builder.redis(settings.redis("store", url)?);
            }
            #[cfg(not(feature = "redis"))]
            return Err(settings.error(
                "store",
                "a Redis store needs callnext built with its `redis` feature",
            ));
        }
        other => {
            return Err(settings.error(
                "store",
                format!("expected `memory` or a `redis://` URL, got `{other}`"),
            ))
        }
    }
    let limit = builder.build().map_err(|err| match err.setting() {
        // A policy's name is written in its `limit`.
        Some("name") => settings.error("limit", &err),
        _ => settings.built(&err),
    })?;
    Ok(Entry::hook(limit))
}
