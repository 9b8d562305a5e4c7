//! The batteries as configuration kinds: each `[middleware.<name>]` table's keys, checked
//! into the battery's builder.

use http::HeaderName;
use serde::{Deserialize, Serialize};

use super::Secret;

use super::{FileError, MiddlewareSettings};
use std::collections::BTreeMap;

use crate::middleware::limit::{BodyLimit, ConcurrencyLimit};
use crate::middleware::set_header::Mode;
use crate::middleware::{
    request_id, Cors, ProcessTime, SecurityHeaders, SetHeaders, SetRequestId, Timeout,
};
use crate::Entry;

type Factory = fn(&MiddlewareSettings<'_>) -> Result<Entry, FileError>;

/// Name, rank in the recommended order (DESIGN.md: request id first, then the access log,
/// CORS, security headers, timeout, concurrency, body limit, rate limits, sessions, auth,
/// compression), and factory.
pub(super) const BUILTIN: &[(&str, u32, Factory)] = &[
    ("request_id", 0, request_id),
    ("access_log", 10, access_log),
    ("process_time", 15, process_time),
    ("cors", 20, cors),
    ("security_headers", 30, security_headers),
    ("set_header", 35, set_header),
    ("timeout", 40, timeout),
    ("concurrency", 50, concurrency),
    ("body_limit", 60, body_limit),
    ("rate_limit", 70, rate_limit),
    ("session", 80, session),
    ("auth", 90, auth),
    ("compression", 110, compression),
];

/// `value` as one of `options`, or the error "expected `a`, `b` or `c`, got `value`" at `key`.
fn choice<T: Copy>(
    settings: &MiddlewareSettings<'_>,
    key: &str,
    value: &str,
    options: &[(&str, T)],
) -> Result<T, FileError> {
    if let Some((_, chosen)) = options.iter().find(|(name, _)| *name == value) {
        return Ok(*chosen);
    }
    let names: Vec<String> = options
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    let expected = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(settings.error(key, format!("expected {expected}, got `{value}`")))
}

fn header_name(
    settings: &MiddlewareSettings<'_>,
    key: &str,
    value: &str,
) -> Result<HeaderName, FileError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| settings.error(key, format!("{value:?} is not a header name")))
}

fn process_time(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        header: String,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                header: "x-process-time".to_owned(),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let header = header_name(settings, "header", &s.header)?;
    Ok(Entry::hook(ProcessTime::new().header(header)))
}

fn request_id(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize, Default, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Invalid {
        #[default]
        Replace,
        Reject,
    }
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        header: String,
        invalid: Invalid,
        uuid_only: bool,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                header: "x-request-id".to_owned(),
                invalid: Invalid::Replace,
                uuid_only: false,
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let header = header_name(settings, "header", &s.header)?;
    let on_invalid = match s.invalid {
        Invalid::Replace => request_id::OnInvalid::Replace,
        Invalid::Reject => request_id::OnInvalid::Reject,
    };
    Ok(Entry::hook(
        SetRequestId::new()
            .header(header)
            .on_invalid(on_invalid)
            .uuid_only(s.uuid_only),
    ))
}

fn security_headers(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        preset: String,
        force: bool,
        hsts: String,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                preset: "api".to_owned(),
                force: false,
                hsts: String::new(),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let mut headers =
        SecurityHeaders::preset(&s.preset).map_err(|err| settings.error("preset", err))?;
    if !s.hsts.is_empty() {
        headers = headers
            .hsts(&s.hsts)
            .map_err(|err| settings.error("hsts", err))?;
    }
    Ok(Entry::hook(headers.force(s.force)))
}

fn set_header(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        request_set: BTreeMap<String, Secret>,
        request_append: BTreeMap<String, Secret>,
        request_if_absent: BTreeMap<String, Secret>,
        response_set: BTreeMap<String, Secret>,
        response_append: BTreeMap<String, Secret>,
        response_if_absent: BTreeMap<String, Secret>,
    }
    let s: Settings = settings.parse_shown()?;
    let mut headers = SetHeaders::new();
    let groups = [
        ("request_set", &s.request_set, true, Mode::Set),
        ("request_append", &s.request_append, true, Mode::Append),
        (
            "request_if_absent",
            &s.request_if_absent,
            true,
            Mode::IfAbsent,
        ),
        ("response_set", &s.response_set, false, Mode::Set),
        ("response_append", &s.response_append, false, Mode::Append),
        (
            "response_if_absent",
            &s.response_if_absent,
            false,
            Mode::IfAbsent,
        ),
    ];
    for (key, map, request, mode) in groups {
        for (name, value) in map {
            let name = header_name(settings, &format!("{key}.{name}"), name)?;
            let value = http::HeaderValue::from_str(value.expose())
                .map_err(|_| settings.error(&format!("{key}.{name}"), "not a header value"))?;
            headers = if request {
                headers.request(mode, name, value)
            } else {
                headers.response(mode, name, value)
            };
        }
    }
    Ok(Entry::hook(headers))
}

fn cors(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        allow_origins: Vec<String>,
        allow_methods: Vec<String>,
        allow_headers: Vec<String>,
        expose_headers: Vec<String>,
        allow_credentials: bool,
        max_age: super::Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                allow_origins: Vec::new(),
                allow_methods: vec!["GET".to_owned()],
                allow_headers: Vec::new(),
                expose_headers: Vec::new(),
                allow_credentials: false,
                max_age: super::Duration::from_secs(600),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let cors = Cors::builder()
        .allow_origins(&s.allow_origins)
        .allow_methods(&s.allow_methods)
        .allow_headers(&s.allow_headers)
        .expose_headers(&s.expose_headers)
        .allow_credentials(s.allow_credentials)
        .max_age(s.max_age.get())
        .build()
        .map_err(|err| settings.built(&err))?;
    // Scripts may read the other batteries' headers.
    let mut exposed = Vec::new();
    for table in settings
        .config()
        .middleware
        .iter()
        .filter_map(|(name, table)| {
            let kind = table.get("kind").and_then(|k| k.as_str()).unwrap_or(name);
            (kind == "request_id").then_some(table)
        })
    {
        let header = table
            .get("header")
            .and_then(|h| h.as_str())
            .unwrap_or("x-request-id");
        if let Ok(name) = HeaderName::from_bytes(header.as_bytes()) {
            exposed.push(name);
        }
    }
    for table in settings
        .config()
        .middleware
        .iter()
        .filter_map(|(name, table)| {
            let kind = table.get("kind").and_then(|k| k.as_str()).unwrap_or(name);
            (kind == "rate_limit").then_some(table)
        })
    {
        use crate::middleware::rate_limit::Headers;
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

fn timeout(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        after: super::Duration,
        status: u16,
        retry_after: super::Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                after: super::Duration::from_secs(30),
                status: 503,
                retry_after: super::Duration::from_secs(1),
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

fn concurrency(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        max: usize,
        queue: usize,
        retry_after: super::Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                max: 1000,
                queue: 0,
                retry_after: super::Duration::from_secs(1),
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

fn body_limit(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        max: super::Size,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                max: super::Size::from_bytes(1_000_000),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let max = usize::try_from(s.max.bytes()).unwrap_or(usize::MAX);
    let limit = BodyLimit::new(max).map_err(|err| settings.error("max", err))?;
    Ok(Entry::hook(limit))
}

/// One value or a list of them (`limit = "10/s"` or `limit = ["10/s", "1000/h"]`).
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

fn rate_limit(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
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
        store_timeout: super::Duration,
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
                store_timeout: super::Duration::from_millis(50),
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
        url if url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://") =>
        {
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

fn session(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    use crate::middleware::session::{MemoryStore, Sessions};
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        store: String,
        secret: Secret,
        old_secrets: Vec<Secret>,
        cookie: String,
        host_prefix: bool,
        idle_timeout: super::Duration,
        absolute_timeout: super::Duration,
        max_sessions: u64,
        prefix: String,
        store_timeout: super::Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                store: "memory".to_owned(),
                secret: Secret::default(),
                old_secrets: Vec::new(),
                cookie: "id".to_owned(),
                host_prefix: false,
                idle_timeout: super::Duration::from_secs(30 * 60),
                absolute_timeout: super::Duration::from_secs(8 * 3600),
                max_sessions: 100_000,
                prefix: "callnext:session".to_owned(),
                store_timeout: super::Duration::from_secs(1),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let secret = if s.secret.is_empty() {
        std::env::var("CALLNEXT_SESSION_SECRET").unwrap_or_default()
    } else {
        s.secret.expose().to_owned()
    };
    let builder = Sessions::builder()
        .secret(secret.as_bytes())
        .old_secrets(s.old_secrets.iter().map(Secret::expose))
        .cookie(s.cookie)
        .host_prefix(s.host_prefix)
        .idle_timeout(s.idle_timeout.get())
        .absolute_timeout(s.absolute_timeout.get())
        .store_timeout(s.store_timeout.get());
    let builder = match s.store.as_str() {
        "memory" => builder.store(MemoryStore::new(s.max_sessions)),
        #[cfg(feature = "redis")]
        url if url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://") =>
        {
            let redis = settings.redis("store", url)?;
            builder.store(crate::middleware::session::RedisStore::new(redis).prefix(s.prefix))
        }
        #[cfg(feature = "sql")]
        url if url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:") =>
        {
            let store = crate::middleware::session::SqlStore::open(url)
                .map_err(|err| settings.error("store", err))?;
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

fn auth(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        api_keys: String,
        public_paths: Vec<String>,
        scopes: BTreeMap<String, Vec<String>>,
        cache_ttl: super::Duration,
        cache_capacity: u64,
        jwks_url: String,
        jwt_algorithms: Vec<String>,
        jwt_issuer: String,
        jwt_audience: OneOrMany<String>,
        jwt_leeway: super::Duration,
        jwks_min_refresh: super::Duration,
        jwks_max_age: super::Duration,
        jwks_timeout: super::Duration,
        external_url: String,
        external_headers: Vec<String>,
        external_copy_headers: Vec<String>,
        external_timeout: super::Duration,
        external_cache_ttl: super::Duration,
        store_timeout: super::Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                api_keys: String::new(),
                public_paths: ["/", "/health/live", "/health/ready"]
                    .map(str::to_owned)
                    .to_vec(),
                scopes: BTreeMap::new(),
                cache_ttl: super::Duration::from_secs(30),
                cache_capacity: 10_000,
                jwks_url: String::new(),
                jwt_algorithms: vec!["RS256".to_owned()],
                jwt_issuer: String::new(),
                jwt_audience: OneOrMany::Many(Vec::new()),
                jwt_leeway: super::Duration::from_secs(60),
                jwks_min_refresh: super::Duration::from_secs(10),
                jwks_max_age: super::Duration::from_secs(300),
                jwks_timeout: super::Duration::from_secs(5),
                external_url: String::new(),
                external_headers: ["authorization", "cookie", "x-api-key"]
                    .map(str::to_owned)
                    .to_vec(),
                external_copy_headers: Vec::new(),
                external_timeout: super::Duration::from_secs(1),
                external_cache_ttl: super::Duration::from_secs(5),
                store_timeout: super::Duration::from_secs(1),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let mut builder = crate::middleware::Auth::builder()
        .public_paths(s.public_paths)
        .cache_ttl(s.cache_ttl.get())
        .cache_capacity(s.cache_capacity)
        .store_timeout(s.store_timeout.get());
    for (prefix, scopes) in s.scopes {
        builder = builder.require_scopes(prefix, scopes);
    }
    #[cfg(feature = "sql")]
    if !s.api_keys.is_empty() {
        let store = crate::middleware::auth::SqlKeyStore::open(&s.api_keys)
            .map_err(|err| settings.error("api_keys", err))?;
        builder = builder.api_keys(store);
    }
    #[cfg(not(feature = "sql"))]
    if !s.api_keys.is_empty() {
        return Err(settings.error("api_keys", "needs the `sql` feature"));
    }
    #[cfg(feature = "jwt")]
    if !s.jwks_url.is_empty() {
        let mut jwt = crate::middleware::auth::Jwt::jwks(s.jwks_url)
            .algorithms(s.jwt_algorithms)
            .leeway(s.jwt_leeway.get())
            .min_refresh_interval(s.jwks_min_refresh.get())
            .jwks_max_age(s.jwks_max_age.get())
            .timeout(s.jwks_timeout.get());
        if !s.jwt_issuer.is_empty() {
            jwt = jwt.issuer(s.jwt_issuer);
        }
        for audience in s
            .jwt_audience
            .into_vec()
            .into_iter()
            .filter(|a| !a.is_empty())
        {
            jwt = jwt.audience(audience);
        }
        builder = builder.jwt(jwt);
    }
    #[cfg(not(feature = "jwt"))]
    if !s.jwks_url.is_empty() {
        return Err(settings.error("jwks_url", "needs the `jwt` feature"));
    }
    #[cfg(feature = "external-auth")]
    if !s.external_url.is_empty() {
        builder = builder.external(
            crate::middleware::auth::ExternalAuth::new(s.external_url)
                .forward_headers(s.external_headers)
                .copy_headers(s.external_copy_headers)
                .timeout(s.external_timeout.get())
                .cache_ttl(s.external_cache_ttl.get()),
        );
    }
    #[cfg(not(feature = "external-auth"))]
    if !s.external_url.is_empty() {
        return Err(settings.error("external_url", "needs the `external-auth` feature"));
    }
    let auth = builder.build().map_err(|err| settings.built(&err))?;
    Ok(Entry::hook(auth))
}

fn compression(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        min_size: super::Size,
        gzip: bool,
        br: bool,
        zstd: bool,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                min_size: super::Size::from_bytes(1000),
                gzip: true,
                br: true,
                zstd: true,
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    #[cfg(feature = "compression")]
    {
        let compression = crate::middleware::Compression::new()
            .min_size(s.min_size.bytes())
            .map_err(|err| settings.error("min_size", err))?
            .gzip(s.gzip)
            .br(s.br)
            .zstd(s.zstd);
        Ok(compression.entry())
    }
    #[cfg(not(feature = "compression"))]
    {
        let _ = s;
        Err(settings.error("", "compression needs callnext's `compression` feature"))
    }
}

fn access_log(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
    use crate::middleware::access_log::{AccessLog, Format, OnFull, Rotate, Sink};
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Settings {
        format: String,
        path: String,
        rotate: String,
        max_files: usize,
        queue: usize,
        on_full: String,
        exclude_paths: Vec<String>,
        redact_query: Option<Vec<String>>,
        sink: String,
        url: String,
        batch: usize,
        batch_bytes: super::Size,
        batch_wait: super::Duration,
        gzip: bool,
        headers: BTreeMap<String, Secret>,
        content_type: String,
        labels: BTreeMap<String, String>,
        retries: u32,
        send_timeout: super::Duration,
    }
    impl Default for Settings {
        fn default() -> Self {
            Self {
                format: "json".to_owned(),
                path: "stdout".to_owned(),
                rotate: "never".to_owned(),
                max_files: 7,
                queue: 65_536,
                on_full: "drop".to_owned(),
                exclude_paths: vec!["/health/live".to_owned(), "/health/ready".to_owned()],
                redact_query: None,
                sink: "file".to_owned(),
                url: String::new(),
                batch: 1000,
                batch_bytes: super::Size::from_bytes(1 << 20),
                batch_wait: super::Duration::from_secs(1),
                gzip: true,
                headers: BTreeMap::new(),
                content_type: "application/x-ndjson".to_owned(),
                labels: BTreeMap::from([("job".to_owned(), "callnext".to_owned())]),
                retries: 5,
                send_timeout: super::Duration::from_secs(10),
            }
        }
    }
    let s: Settings = settings.parse_shown()?;
    let format = choice(
        settings,
        "format",
        &s.format,
        &[
            ("json", Format::Json),
            ("combined", Format::Combined),
            ("common", Format::Common),
        ],
    )?;
    if !matches!(s.sink.as_str(), "file" | "http" | "loki") {
        return Err(settings.error(
            "sink",
            format!(
                "expected `file`, `http` (JSON lines) or `loki`, got `{}`",
                crate::Printable::new(&s.sink)
            ),
        ));
    }
    #[cfg(not(feature = "log-shipping"))]
    if s.sink != "file" {
        return Err(settings.error("sink", "needs the `log-shipping` feature"));
    }
    let on_full = choice(
        settings,
        "on_full",
        &s.on_full,
        &[("drop", OnFull::Drop), ("block", OnFull::Block)],
    )?;
    let rotate = match s.rotate.as_str() {
        "never" => Rotate::Never,
        "hourly" => Rotate::Hourly,
        "daily" => Rotate::Daily,
        size => Rotate::Size(
            size.parse::<super::Size>()
                .map_err(|_| {
                    settings.error(
                        "rotate",
                        format!("expected `never`, `hourly`, `daily` or a size such as \"100MB\", got `{size}`"),
                    )
                })?
                .bytes(),
        ),
    };
    let sink = if s.path == "stdout" {
        Sink::Stdout
    } else {
        Sink::File {
            path: s.path.clone().into(),
            rotate,
            max_files: s.max_files,
        }
    };
    #[cfg(feature = "log-shipping")]
    let sink = if s.sink == "file" {
        sink
    } else {
        use crate::middleware::access_log::{HttpSink, Shipping};
        let mut http = HttpSink::new(&s.url)
            .shipping(if s.sink == "loki" {
                Shipping::Loki
            } else {
                Shipping::JsonLines
            })
            .content_type(&s.content_type)
            .batch(
                s.batch,
                usize::try_from(s.batch_bytes.bytes()).unwrap_or(usize::MAX),
                s.batch_wait.get(),
            )
            .gzip(s.gzip)
            .retries(s.retries)
            .timeout(s.send_timeout.get());
        for (name, value) in &s.headers {
            http = http.header(name, value.expose());
        }
        for (name, value) in &s.labels {
            http = http.label(name, value);
        }
        // With an HTTP sink, a file `path` receives what could not be sent.
        if s.path != "stdout" {
            http = http.fallback_file(&s.path);
        }
        Sink::Http(http)
    };
    let mut builder = AccessLog::builder()
        .format(format)
        .sink(sink)
        .queue(s.queue)
        .on_full(on_full)
        .exclude_paths(&s.exclude_paths);
    if let Some(redact) = &s.redact_query {
        builder = builder.redact_query(redact);
    }
    let log = builder.build().map_err(|err| settings.built(&err))?;
    Ok(Entry::hook(log))
}
