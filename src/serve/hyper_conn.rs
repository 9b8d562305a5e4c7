//! hyper's side of a connection: the builders with the server's settings, and one connection
//! served as HTTP/1.1 or HTTP/2 (by its preface), or HTTP/1.1 alone.

use std::future::Future;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use super::Server;

/// hyper's connection builder with the server's settings.
pub(super) fn builder(config: &Server) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header-read and idle timeouts are the per-connection watchdog, not hyper's, which
    // arms a fresh timer for every request head.
    builder
        .http1()
        .header_read_timeout(None)
        .keep_alive(config.keep_alive)
        .max_buf_size(config.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_timeout)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// hyper's HTTP/1.1 connection builder with the server's settings, for when HTTP/2 is off.
pub(super) fn http1_builder(config: &Server) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(config.keep_alive)
        .max_buf_size(config.max_header_bytes);
    builder
}

pin_project_lite::pin_project! {
    /// One connection being served: HTTP/1.1 or HTTP/2 by its preface, or HTTP/1.1 alone.
    #[project = ConnProj]
    pub(super) enum Conn<I, S>
    where
        S: hyper::service::HttpService<Incoming>,
    {
        Auto { #[pin] conn: auto::UpgradeableConnection<'static, I, S, TokioExecutor> },
        Http1 { #[pin] conn: hyper::server::conn::http1::UpgradeableConnection<I, S> },
    }
}

type ConnError = Box<dyn std::error::Error + Send + Sync>;

impl<I, S, B> Future for Conn<I, S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: 'static,
    S::Error: Into<ConnError>,
    B: http_body::Body + 'static,
    B::Error: Into<ConnError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    TokioExecutor: auto::HttpServerConnExec<S::Future, B>,
{
    type Output = Result<(), ConnError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project() {
            ConnProj::Auto { conn } => conn.poll(cx),
            ConnProj::Http1 { conn } => conn.poll(cx).map_err(Into::into),
        }
    }
}

impl<I, S, B> Conn<I, S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: 'static,
    S::Error: Into<ConnError>,
    B: http_body::Body + 'static,
    B::Error: Into<ConnError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    TokioExecutor: auto::HttpServerConnExec<S::Future, B>,
{
    /// Stops taking requests: HTTP/1 closes once the response in flight is sent, HTTP/2 sends
    /// a GOAWAY and closes once its streams are done.
    pub(super) fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        match self.project() {
            ConnProj::Auto { conn } => conn.graceful_shutdown(),
            ConnProj::Http1 { conn } => conn.graceful_shutdown(),
        }
    }
}
