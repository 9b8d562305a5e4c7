//! The typed tables of the file: `[server]`, `[log]`, `[admin]`, `[stack]`, `[telemetry]`.
//! Every key has a default; unknown keys are errors.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Duration, Size};

/// `[server]`: the listener, its connections and the client address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerSettings {
    /// Address to listen on. Default `127.0.0.1`.
    pub host: IpAddr,
    /// Port to listen on. Default 8000.
    pub port: u16,
    /// Runtime worker threads; 0 = one per core (the default), 1 = a current-thread runtime.
    pub workers: usize,
    /// Most connections served at once. Default 25,000.
    pub max_connections: usize,
    /// How long a request head may take once begun. Default `"30s"`.
    pub header_read_timeout: Duration,
    /// How long a request body may take once read, plus a second per `body_min_rate` bytes
    /// received; past it, 408 and the connection closed. `"0s"` = off. Default `"30s"`.
    pub body_read_timeout: Duration,
    /// Bytes a second that extend `body_read_timeout`. Default 500.
    pub body_min_rate: u64,
    /// How long an idle HTTP/1 connection stays open. Default `"5s"`.
    pub keep_alive_timeout: Duration,
    /// How long in-flight requests get after SIGINT/SIGTERM. Default `"10s"`.
    pub drain_timeout: Duration,
    /// Serve HTTP/1.1 only (no h2c, no h2 over TLS). Default false.
    pub http1_only: bool,
    /// CIDRs (or addresses, or `unix`) whose forwarding header is believed. Default none.
    pub trusted_proxies: Vec<String>,
    /// The header those proxies write: `x-forwarded-for` (default) or `forwarded`.
    pub forwarded_header: String,
    /// PEM certificate chain; with `tls_key`, serves HTTPS. Default none.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// Most concurrent streams per HTTP/2 connection. Default 200.
    pub max_concurrent_streams: u32,
    /// HTTP/2 keep-alive ping interval; `"0s"` (default) = no pings.
    pub http2_keep_alive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed. Default `"20s"`.
    pub http2_keep_alive_timeout: Duration,
    /// Largest request head accepted. Default `"64KiB"`.
    pub max_header_bytes: Size,
    /// Listen backlog. Default 1024.
    pub backlog: u32,
    /// `SO_REUSEPORT`, so several processes share the port. Default false.
    pub reuse_port: bool,
    /// Serve on this Unix socket path instead of `host:port`. Default none.
    pub uds: String,
    /// Serve on a listening socket the parent process passed: `0` (as stdin, the way inetd,
    /// launchd and uvicorn's `--fd 0` pass it) or `3`, `4`, ... (systemd's socket activation,
    /// `LISTEN_FDS`; taken without this setting too when systemd passes one). Default `-1`:
    /// bind `host:port` or `uds`.
    pub fd: i32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            workers: 0,
            max_connections: 25_000,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            body_min_rate: 500,
            keep_alive_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            http1_only: false,
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".to_owned(),
            tls_cert: String::new(),
            tls_key: String::new(),
            max_concurrent_streams: 200,
            http2_keep_alive_interval: Duration::from_secs(0),
            http2_keep_alive_timeout: Duration::from_secs(20),
            max_header_bytes: Size::from_bytes(64 * 1024),
            backlog: 1024,
            reuse_port: false,
            uds: String::new(),
            fd: -1,
        }
    }
}

/// The log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: what the process logs and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogSettings {
    /// A tracing filter (`info`, `warn,callnext=debug`). Default `info`; `RUST_LOG` wins.
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// Write log lines from a thread of their own, so a request never waits on stdout; lines
    /// that do not fit in its buffer are dropped and counted. Default true.
    pub non_blocking: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
            non_blocking: true,
        }
    }
}

/// `[admin]`: metrics and health endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminSettings {
    /// `""` (default): the admin routes are routes of the app, behind the stack; an address
    /// (`127.0.0.1:9000`): served on a listener of their own.
    pub bind: String,
    /// Path of the Prometheus metrics; `off` turns metrics off. Default `/metrics`.
    pub metrics_path: String,
    /// The live stack page ([`admin::live`](crate::admin::live)). Default false.
    pub page: bool,
    /// Where the page is served. Default `/_callnext` (the page at `/_callnext/`).
    pub page_path: String,
    /// Bearer token of the live stack page (at least 16 characters). Without one, and with
    /// the admin routes inside the app, only loopback clients see the page.
    pub token: super::Secret,
    /// Show query values in the page's request paths. Default false (`?q=`).
    pub show_query_values: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            bind: String::new(),
            metrics_path: "/metrics".to_owned(),
            page: false,
            page_path: "/_callnext".to_owned(),
            token: super::Secret::default(),
            show_query_values: false,
        }
    }
}

/// `[stack]`: the order of the middlewares and the stack's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StackSettings {
    /// Entry names in execution order. Without it, the configured middlewares go in the
    /// recommended order, then the application's own.
    pub order: Option<Vec<String>>,
    /// Send `Server-Timing` with each middleware's time. Default false.
    pub server_timing: bool,
    /// A single poll longer than this is a blocking event. Default `"10ms"`.
    pub blocking_threshold: Duration,
    /// Per-middleware timing and blocking detection. Default true.
    pub instrument: bool,
    /// The stack's `stack` label in metrics. Default `main`.
    pub name: String,
    /// Refuse an order that breaks the linter's rules, instead of warning. Default false.
    pub strict_order: bool,
    /// A panic's message and location in its 500's JSON. Never in production. Default false.
    pub debug: bool,
    /// The app's plain-text error answers (axum's rejections) as JSON errors. Default true.
    pub json_rejections: bool,
}

impl Default for StackSettings {
    fn default() -> Self {
        Self {
            order: None,
            server_timing: false,
            blocking_threshold: Duration::from_millis(10),
            instrument: true,
            name: "main".to_owned(),
            strict_order: false,
            debug: false,
            json_rejections: true,
        }
    }
}

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP (feature `otel`), off without an
/// `endpoint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TelemetrySettings {
    /// OTLP endpoint, e.g. `http://127.0.0.1:4318`. Default none (off).
    pub endpoint: String,
    /// `http/protobuf` (default) or `http/json`.
    pub protocol: String,
    /// The `service.name` resource. Default `callnext`.
    pub service_name: String,
    /// Share of traces sampled, 0 to 1. Default 1.
    pub sampling_ratio: f64,
    /// Headers sent with every export (`authorization`, ...). Default none.
    pub headers: std::collections::BTreeMap<String, super::Secret>,
    /// Keep traces with a 5xx answer whatever the sampling said. Default true.
    pub always_sample_errors: bool,
    /// Keep traces with a blocking poll whatever the sampling said. Default true.
    pub always_sample_blocking: bool,
    /// The middlewares' timings as `spans` (default), `events` or `off`.
    pub middleware_spans: String,
    /// Whose `traceparent` is continued: `trusted_proxies` (default), `always` or `never`.
    pub trust_incoming: String,
    /// Traces kept a second only because their caller asked (beyond the ratio). Default 100.
    pub max_incoming_sampled: u32,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: "http/protobuf".to_owned(),
            service_name: "callnext".to_owned(),
            sampling_ratio: 1.0,
            headers: std::collections::BTreeMap::new(),
            always_sample_errors: true,
            always_sample_blocking: true,
            middleware_spans: "spans".to_owned(),
            trust_incoming: "trusted_proxies".to_owned(),
            max_incoming_sampled: 100,
        }
    }
}
