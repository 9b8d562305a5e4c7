//! The configuration file (TOML) and the server, admin router and stack it builds.
//!
//! The binary reads its settings from this module, and an application embeds the same file
//! the same way: load it, then build the stack from `[stack]` and `[middleware.*]` with its
//! own middlewares registered by name ([`Registry`]).
//!
//! ```
//! use callnext::config::{Config, Registry};
//! use callnext::{Entry, Next, Request, Response};
//!
//! async fn audit(req: Request, next: Next<'_>) -> Response {
//!     next.run(req).await
//! }
//!
//! let text = r#"
//! [server]
//! port = 9000
//! keep_alive_timeout = "10s"
//! trusted_proxies = ["10.0.0.0/8"]
//!
//! [stack]
//! order = ["timing", "audit"]
//!
//! [middleware.timing]
//! kind = "process_time"
//! "#;
//! let config = Config::parse(text, "app.toml", &[]).unwrap();
//! assert_eq!(config.server.port, 9000);
//!
//! let registry = Registry::new().middleware("audit", |_| Ok(Entry::func(audit)));
//! let stack = config.stack(&registry).unwrap();
//! let names: Vec<_> = stack.describe().into_iter().map(|e| e.name).collect();
//! assert_eq!(names, ["timing", "audit"]);
//!
//! // Mistakes name the file, the line and the key.
//! let err = Config::parse("[server]\nport = \"x\"\n", "app.toml", &[]).unwrap_err();
//! assert_eq!(err.to_string(), "app.toml:2: `server.port`: invalid type: string \"x\", expected u16");
//! ```

mod assemble;
mod error;
pub(crate) mod fields;
mod registry;
mod secret;
mod sections;
mod shown;
mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use error::FileError;
use error::{toml_error, Source};
pub(crate) use registry::BuiltinFactory;
pub use registry::{MiddlewareSettings, Registry, StackLine};
pub use secret::Secret;
pub use sections::{
    AdminSettings, LogFormat, LogSettings, ServerSettings, StackSettings, TelemetrySettings,
};
pub use units::{Duration, Size};

use crate::{ConfigError, TrustedProxies};

/// The tables callnext itself reads; an application names its own with `sections`.
const TABLES: [&str; 6] = ["server", "log", "admin", "stack", "middleware", "telemetry"];

/// The configuration file, parsed and checked.
///
/// Every table and key has a default, so an empty file (or [`Config::default`]) is the
/// in-memory defaults the binary starts with.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Config {
    /// `[server]`.
    pub server: ServerSettings,
    /// `[log]`.
    pub log: LogSettings,
    /// `[admin]`.
    pub admin: AdminSettings,
    /// `[stack]`.
    pub stack: StackSettings,
    /// `[middleware.<name>]` tables, by name (a table's `kind` defaults to its name).
    pub middleware: BTreeMap<String, toml::Table>,
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
    /// The application's own tables (named when loading).
    sections: BTreeMap<String, toml::Value>,
    source: Source,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    server: ServerSettings,
    #[serde(default)]
    log: LogSettings,
    #[serde(default)]
    admin: AdminSettings,
    #[serde(default)]
    stack: StackSettings,
    #[serde(default)]
    middleware: BTreeMap<String, toml::Table>,
    #[serde(default)]
    telemetry: TelemetrySettings,
}

impl Config {
    /// Reads and checks the file at `path`. `sections` are the names of the application's own
    /// top-level tables (read with [`Config::section`]); any other unknown table is an error.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, is not TOML, or has an unknown table or key, a value of the
    /// wrong type or an invalid value.
    pub fn load(path: impl AsRef<Path>, sections: &[&str]) -> Result<Self, FileError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| FileError {
            origin: origin.clone(),
            line: None,
            key: None,
            message: format!("cannot read the configuration file: {err}"),
        })?;
        Self::parse(&text, &origin, sections)
    }

    /// Parses and checks `text`; `origin` names it in errors (a file name).
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn parse(text: &str, origin: &str, sections: &[&str]) -> Result<Self, FileError> {
        let source = Source {
            origin: origin.to_owned(),
            text: text.to_owned(),
        };
        let doc = toml::de::DeTable::parse(text).map_err(|err| toml_error(&source, "", &err))?;
        for (key, _) in doc.get_ref().iter() {
            let name: &str = key.get_ref();
            if !TABLES.contains(&name) && !sections.contains(&name) {
                let mut known: Vec<&str> = TABLES.to_vec();
                known.extend_from_slice(sections);
                return Err(FileError {
                    origin: origin.to_owned(),
                    line: Some(source.line_at(key.span().start)),
                    key: Some(name.to_owned()),
                    message: format!(
                        "unknown table, expected one of {}",
                        known
                            .iter()
                            .map(|t| format!("`{t}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let deserializer =
            toml::Deserializer::parse(text).map_err(|err| toml_error(&source, "", &err))?;
        let file: File = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            toml_error(&source, &key, err.inner())
        })?;
        let mut app = BTreeMap::new();
        let table: toml::Table =
            toml::from_str(text).map_err(|err| toml_error(&source, "", &err))?;
        for (name, value) in table {
            if sections.contains(&name.as_str()) {
                app.insert(name, value);
            }
        }
        let config = Self {
            server: file.server,
            log: file.log,
            admin: file.admin,
            stack: file.stack,
            middleware: file.middleware,
            telemetry: file.telemetry,
            sections: app,
            source,
        };
        config.validate()?;
        Ok(config)
    }

    /// The application's table `name` (declared when loading), or `T::default()` without one.
    ///
    /// # Errors
    ///
    /// A key of the wrong type, or an unknown key when `T` denies them
    /// (`#[serde(deny_unknown_fields)]`).
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, FileError> {
        let Some(value) = self.sections.get(name) else {
            return Ok(T::default());
        };
        serde_path_to_error::deserialize(value.clone()).map_err(|err| {
            let path = err.path().to_string();
            let key = if path == "." {
                name.to_owned()
            } else {
                format!("{name}.{path}")
            };
            self.source.error(&key, err.inner().message())
        })
    }

    /// Replaces the application's table `name` (after merging flags into it, say), so
    /// [`Config::to_toml`] shows what is in effect.
    ///
    /// # Errors
    ///
    /// A value TOML cannot hold.
    pub fn set_section<T: serde::Serialize>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), FileError> {
        let value = toml::Value::try_from(value).map_err(|err| self.error(name, err))?;
        self.sections.insert(name.to_owned(), value);
        Ok(())
    }

    /// The whole configuration as TOML, defaults filled in and secrets redacted. The
    /// `[middleware.*]` tables are shown as written, the values of keys named like secrets
    /// hidden; [`Config::to_toml_with`] shows them as their kinds read them, secrets by type
    /// (what `callnext --print-config` prints).
    pub fn to_toml(&self) -> String {
        self.render(None)
    }

    /// The configuration as TOML, with `middleware` as given (as the kinds read it) or as
    /// written.
    fn render(&self, middleware: Option<BTreeMap<String, toml::Value>>) -> String {
        let mut doc = toml::Table::new();
        let mut put = |name: &str, value: Result<toml::Value, toml::ser::Error>| {
            if let Ok(mut value) = value {
                shown::redact(name, &mut value);
                doc.insert(name.to_owned(), value);
            }
        };
        put("server", toml::Value::try_from(&self.server));
        put("log", toml::Value::try_from(&self.log));
        put("admin", toml::Value::try_from(&self.admin));
        put("stack", toml::Value::try_from(&self.stack));
        if middleware.is_none() {
            put("middleware", toml::Value::try_from(&self.middleware));
        }
        put("telemetry", toml::Value::try_from(&self.telemetry));
        for (name, value) in &self.sections {
            put(name, Ok(value.clone()));
        }
        if let Some(tables) = middleware {
            // Already shown as their kinds read them: no guessing by key name.
            doc.insert(
                "middleware".to_owned(),
                toml::Value::Table(tables.into_iter().collect()),
            );
        }
        toml::to_string(&doc).unwrap_or_default()
    }

    /// An error at `key` of this configuration, with its file and line.
    pub fn error(&self, key: &str, message: impl fmt::Display) -> FileError {
        self.source.error(key, message)
    }

    /// Checks what the types alone do not (TLS keys in pairs, trusted proxies, the admin
    /// address and paths, features not available yet). [`Config::load`] and
    /// [`Config::parse`] call it; call it again after changing fields (from flags, say).
    ///
    /// # Errors
    ///
    /// The first invalid value, with its key and line.
    pub fn validate(&self) -> Result<(), FileError> {
        self.trusted_proxies()?;
        let server = &self.server;
        if server.tls_cert.is_empty() != server.tls_key.is_empty() {
            let missing = if server.tls_cert.is_empty() {
                "server.tls_cert"
            } else {
                "server.tls_key"
            };
            return Err(self.error(
                missing,
                "`tls_cert` and `tls_key` go together: set both or neither",
            ));
        }
        if !self.admin.bind.is_empty() && self.admin.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.error(
                "admin.bind",
                format!(
                    "expected an address such as \"127.0.0.1:9000\", got {:?}",
                    self.admin.bind
                ),
            ));
        }
        if self.admin.metrics_path != "off" {
            crate::admin::checked_path("metrics_path", &self.admin.metrics_path)
                .map_err(|err| self.error("admin.metrics_path", err))?;
        }
        if self.admin.page {
            self.live_page()?;
        }
        #[cfg(not(feature = "otel"))]
        if !self.telemetry.endpoint.is_empty() {
            return Err(self.error("telemetry.endpoint", "needs the `otel` feature"));
        }
        #[cfg(feature = "otel")]
        if !self.telemetry.endpoint.is_empty() {
            let _ = self.telemetry_settings()?;
        }
        if self.stack.blocking_threshold.get().is_zero() {
            return Err(self.error(
                "stack.blocking_threshold",
                "must be greater than zero (every poll would be blocking)",
            ));
        }
        Ok(())
    }

    /// `[admin]`'s live stack page, when `page = true`: open to any client bearing `token`,
    /// otherwise to loopback clients, or to all when the admin routes have their own `bind`.
    ///
    /// # Errors
    ///
    /// A `page_path` not starting with `/`, or a `token` shorter than 16 characters.
    pub fn live_page(&self) -> Result<Option<crate::admin::LivePage>, FileError> {
        if !self.admin.page {
            return Ok(None);
        }
        let admin = &self.admin;
        crate::admin::LivePage::builder()
            .path(&admin.page_path)
            .token(admin.token.expose())
            .open(!admin.bind.is_empty())
            .show_query_values(admin.show_query_values)
            .build()
            .map(Some)
            .map_err(|err| {
                let key = if err.to_string().starts_with("invalid `token`") {
                    "admin.token"
                } else {
                    "admin.page_path"
                };
                self.error(key, err)
            })
    }

    /// `[telemetry]` as [`Telemetry`](crate::telemetry::Telemetry) settings (the exporter is
    /// not started).
    ///
    /// # Errors
    ///
    /// An unknown `protocol` or `middleware_spans`.
    #[cfg(feature = "otel")]
    pub fn telemetry_settings(&self) -> Result<crate::telemetry::TelemetryBuilder, FileError> {
        use crate::telemetry::{MiddlewareSpans, Protocol, Telemetry};
        let t = &self.telemetry;
        let protocol = match t.protocol.as_str() {
            "http/protobuf" => Protocol::HttpProtobuf,
            "http/json" => Protocol::HttpJson,
            other => {
                return Err(self.error(
                    "telemetry.protocol",
                    format!(
                        "expected `http/protobuf` or `http/json`, got `{}`",
                        crate::Printable::new(other)
                    ),
                ))
            }
        };
        let middlewares = match t.middleware_spans.as_str() {
            "spans" => MiddlewareSpans::Spans,
            "events" => MiddlewareSpans::Events,
            "off" => MiddlewareSpans::Off,
            other => {
                return Err(self.error(
                    "telemetry.middleware_spans",
                    format!(
                        "expected `spans`, `events` or `off`, got `{}`",
                        crate::Printable::new(other)
                    ),
                ))
            }
        };
        let mut builder = Telemetry::builder()
            .endpoint(&t.endpoint)
            .protocol(protocol)
            .service_name(&t.service_name)
            .sampling_ratio(t.sampling_ratio)
            .always_keep(t.always_sample_errors, t.always_sample_blocking)
            .middlewares(middlewares);
        for (name, value) in &t.headers {
            builder = builder.header(name, value.expose());
        }
        Ok(builder)
    }

    /// `[server] trusted_proxies` and `forwarded_header`.
    ///
    /// # Errors
    ///
    /// An entry that is not an address, a network or `unix`; an unknown header.
    pub fn trusted_proxies(&self) -> Result<TrustedProxies, FileError> {
        let header = self
            .server
            .forwarded_header
            .parse()
            .map_err(|err: ConfigError| self.error("server.forwarded_header", err))?;
        TrustedProxies::parse(&self.server.trusted_proxies)
            .map(|proxies| proxies.header(header))
            .map_err(|err| self.error("server.trusted_proxies", err))
    }

    /// The [`Server`](crate::serve::Server) of `[server]` (TLS files are read here).
    ///
    /// # Errors
    ///
    /// TLS files that cannot be read or do not hold a matching certificate and key.
    #[cfg(feature = "server")]
    pub fn server(&self) -> Result<crate::serve::Server, FileError> {
        let s = &self.server;
        let server = crate::serve::Server::new()
            .max_connections(s.max_connections)
            .header_read_timeout(s.header_read_timeout.get())
            .keep_alive_timeout(s.keep_alive_timeout.get())
            .drain_timeout(s.drain_timeout.get())
            .http2(!s.http1_only)
            .max_concurrent_streams(s.max_concurrent_streams)
            .http2_keep_alive(
                s.http2_keep_alive_interval.get(),
                s.http2_keep_alive_timeout.get(),
            )
            .max_header_bytes(usize::try_from(s.max_header_bytes.bytes()).unwrap_or(usize::MAX))
            .backlog(s.backlog)
            .reuse_port(s.reuse_port);
        if s.tls_cert.is_empty() {
            return Ok(server);
        }
        #[cfg(feature = "tls")]
        {
            let tls = crate::serve::TlsConfig::from_pem_files(&s.tls_cert, &s.tls_key).map_err(
                |err| {
                    let key = if err.to_string().contains("`tls_cert`") {
                        "server.tls_cert"
                    } else {
                        "server.tls_key"
                    };
                    self.error(key, err)
                },
            )?;
            Ok(server.tls(tls))
        }
        #[cfg(not(feature = "tls"))]
        Err(self.error("server.tls_cert", "HTTPS needs callnext's `tls` feature"))
    }
}
