//! `[middleware.access_log]`: the table's keys and their defaults, checked into the builder.

use serde::{Deserialize, Serialize};

use crate::config::fields::choice;
use crate::config::{Duration, FileError, MiddlewareSettings, Secret, Size};
use crate::Entry;
use std::collections::BTreeMap;

/// A `[middleware.access_log]` table's entry.
pub(crate) fn from_config(settings: &MiddlewareSettings<'_>) -> Result<Entry, FileError> {
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
        batch_bytes: Size,
        batch_wait: Duration,
        gzip: bool,
        headers: BTreeMap<String, Secret>,
        content_type: String,
        labels: BTreeMap<String, String>,
        retries: u32,
        send_timeout: Duration,
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
                batch_bytes: Size::from_bytes(1 << 20),
                batch_wait: Duration::from_secs(1),
                gzip: true,
                headers: BTreeMap::new(),
                content_type: "application/x-ndjson".to_owned(),
                labels: BTreeMap::from([("job".to_owned(), "callnext".to_owned())]),
                retries: 5,
                send_timeout: Duration::from_secs(10),
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
            size.parse::<Size>()
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
