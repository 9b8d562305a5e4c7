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
mod built;
mod error;
pub(crate) mod fields;
#[cfg(feature = "server")]
mod log_init;
mod registry;
#[cfg(feature = "server")]
mod reload;
mod secret;
mod sections;
#[cfg(feature = "server")]
mod serving;
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
#[cfg(feature = "server")]
pub use serving::Serve;
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
        if !(self.server.fd == -1 || self.server.fd == 0 || self.server.fd >= 3) {
            return Err(self.error(
                "server.fd",
                format!(
                    "expected -1 (bind host:port), 0 (stdin) or 3, 4, ... (systemd's LISTEN_FDS), got {}",
                    self.server.fd
                ),
            ));
        }
        if self.server.fd >= 0 && !self.server.uds.is_empty() {
            return Err(self.error(
                "server.fd",
                "`fd` and `uds` are two ways to listen: set one",
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
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(self.error("log.level", format!("not a log filter: {err}")));
        }
        if self.stack.blocking_threshold.get().is_zero() {
            return Err(self.error(
                "stack.blocking_threshold",
                "must be greater than zero (every poll would be blocking)",
            ));
        }
        Ok(())
    }
}
