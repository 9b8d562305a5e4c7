//! The file's tables as the library's own settings: the live page, telemetry, trusted proxies
//! and the server, each checked with its key and line.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Config {
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
        use crate::telemetry::{MiddlewareSpans, Protocol, Telemetry, TrustIncoming};
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
        let trust = match t.trust_incoming.as_str() {
            "trusted_proxies" => TrustIncoming::TrustedProxies,
            "always" => TrustIncoming::Always,
            "never" => TrustIncoming::Never,
            other => {
                return Err(self.error(
                    "telemetry.trust_incoming",
                    format!(
                        "expected `trusted_proxies`, `always` or `never`, got `{}`",
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
            .middlewares(middlewares)
            .trust_incoming(trust)
            .max_incoming_sampled(t.max_incoming_sampled);
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
            .body_read_timeout(s.body_read_timeout.get())
            .body_min_rate(s.body_min_rate)
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
