//! [`Server`]: HTTP/1.1 and HTTP/2 (h2c, or h2 over TLS) on hyper-util, with timeouts, a
//! connection limit, TCP or Unix sockets, and a graceful shutdown that ends.

pub(crate) mod body_deadline;
mod connection;
mod counted;
mod disconnect;
mod hyper_conn;
mod listener;
mod run;
mod shutdown;
mod slot;
#[cfg(feature = "tls")]
mod tls;
mod watched;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::admin::Readiness;
pub use disconnect::Disconnect;
use listener::Listener;
pub use shutdown::shutdown_signal;
#[cfg(feature = "tls")]
pub use tls::TlsConfig;

/// Server settings. Build with [`Server::new`], then [`Server::bind`] (or
/// [`Server::bind_unix`]).
///
/// ```no_run
/// use callnext::{serve::{shutdown_signal, Server}, Stack};
/// use std::time::Duration;
///
/// # async fn run() -> std::io::Result<()> {
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let service = Stack::new().service(app);
/// let server = Server::new()
///     .keep_alive_timeout(Duration::from_secs(5))
///     .drain_timeout(Duration::from_secs(10))
///     .bind("127.0.0.1:8000".parse().unwrap())
///     .await?;
/// server.serve(service, shutdown_signal()).await
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Server {
    max_connections: usize,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    body_min_rate: u64,
    keep_alive_timeout: Duration,
    drain_timeout: Duration,
    keep_alive: bool,
    http2: bool,
    max_header_bytes: usize,
    max_concurrent_streams: u32,
    http2_keep_alive_interval: Option<Duration>,
    http2_keep_alive_timeout: Duration,
    backlog: u32,
    reuse_port: bool,
    readiness: Readiness,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            max_connections: 25_000,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            body_min_rate: 500,
            keep_alive_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            keep_alive: true,
            http2: true,
            max_header_bytes: 64 * 1024,
            max_concurrent_streams: 200,
            http2_keep_alive_interval: None,
            http2_keep_alive_timeout: Duration::from_secs(20),
            backlog: 1024,
            reuse_port: false,
            readiness: Readiness::new(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Server {
    /// Default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most connections served at once; further ones wait in the listen backlog.
    /// Zero is taken as 1. Defaults to 25,000.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a client may take to send a whole request head once it has begun, before the
    /// connection is closed (slowloris); zero turns it off. Defaults to 30 s.
    ///
    /// A per-connection watchdog checks twice per timeout, so such a connection is closed
    /// between one and one and a half timeouts after the head began; a request being answered
    /// (however long its handler or streamed body takes) keeps it open. HTTP/2 connections are
    /// exempt once their first request arrives. The watchdog costs a few atomic operations per
    /// request instead of a timer per request head.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a request's body may take to arrive once the app reads it, plus one second
    /// for every [`body_min_rate`](Self::body_min_rate) bytes received (as Apache's
    /// `mod_reqtimeout`): a client sending a byte now and then to a route that reads its body
    /// would otherwise hold a connection slot as long as it liked. Past it, the read fails
    /// and the answer is `408 {"detail":"Request Timeout"}` with the connection closed. Zero
    /// turns it off. Applies to services built by a [`Stack`](crate::Stack). Defaults to 30 s.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// The data rate that extends [`body_read_timeout`](Self::body_read_timeout): one more
    /// second per this many bytes received (0: no extension). Defaults to 500 bytes.
    pub fn body_min_rate(mut self, bytes_per_second: u64) -> Self {
        self.body_min_rate = bytes_per_second;
        self
    }

    /// How long an HTTP/1 connection may stay idle (nothing sent, no request being answered)
    /// before it is closed, as uvicorn's `--timeout-keep-alive`; this also applies to a new
    /// connection that has sent nothing yet. Zero turns it off. Defaults to 5 s.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = timeout;
        self
    }

    /// After a shutdown signal, how long in-flight requests may take to finish; then the
    /// connections left are cut (their tasks aborted) and [`BoundServer::serve`] returns.
    /// Defaults to 10 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// HTTP/1 keep-alive. Defaults to on.
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// Accept HTTP/2 beside HTTP/1.1: with prior knowledge (h2c) in clear text, by ALPN over
    /// TLS. Defaults to on.
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// The most requests (streams) one HTTP/2 connection may have open at once. Defaults to
    /// 200; zero is taken as 1.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = max.max(1);
        self
    }

    /// HTTP/2 keep-alive pings: sent after `interval` without frames from the client; the
    /// connection is closed when a ping goes unanswered for `timeout`. Off by default.
    pub fn http2_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.http2_keep_alive_interval = (!interval.is_zero()).then_some(interval);
        self.http2_keep_alive_timeout = timeout;
        self
    }

    /// The largest request head (request line and headers) accepted; larger ones get
    /// `431 Request Header Fields Too Large` on HTTP/1. Values below 8 KiB (hyper's smallest
    /// read buffer) are raised to 8 KiB. Defaults to 64 KiB.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(8192);
        self
    }

    /// The listen backlog: connections the kernel queues before they are accepted. Defaults
    /// to 1024.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog.max(1);
        self
    }

    /// `SO_REUSEPORT`: several processes bind one port and the kernel spreads connections
    /// between them (Unix only). Defaults to off.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// The switch `/health/ready` reports ([`Admin::readiness`](crate::admin::Admin::readiness)):
    /// the server turns it off as soon as shutdown begins.
    pub fn readiness(mut self, readiness: &Readiness) -> Self {
        self.readiness = readiness.clone();
        self
    }

    /// Serves HTTPS with this certificate (ALPN offers `h2` and `http/1.1`). The TLS handshake
    /// must end within the header-read timeout.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Binds the listening TCP socket.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound (in use, not permitted); the error names the address.
    pub async fn bind(self, addr: SocketAddr) -> io::Result<BoundServer> {
        let listener = Listener::tcp(addr, self.backlog, self.reuse_port)?;
        Ok(BoundServer {
            listener,
            config: self,
        })
    }

    /// Binds a Unix domain socket at `path` (as uvicorn's `--uds`), for a proxy on the same
    /// host. A socket file left behind by a server that is gone is replaced; the file is
    /// removed when the server stops. Requests carry no `ConnectInfo` (there is no peer IP
    /// address), and their [`ClientIp`](crate::ClientIp) is set only by a stack that trusts
    /// the proxy's header ([`Stack::trusted_proxies`](crate::Stack::trusted_proxies)
    /// with `unix` trusted), else left out.
    ///
    /// # Errors
    ///
    /// When the socket cannot be bound or another server listens on it.
    #[cfg(unix)]
    pub async fn bind_unix(self, path: impl AsRef<std::path::Path>) -> io::Result<BoundServer> {
        let listener = Listener::unix(path.as_ref())?;
        Ok(BoundServer {
            listener,
            config: self,
        })
    }
}

impl Server {
    /// Serves on a listening socket the parent process passed instead of binding one, so a
    /// supervisor can restart the server without refusing a connection: `fd` 0 is stdin (as
    /// inetd and launchd pass it, and uvicorn's `--fd 0`), `3 + i` the `i`-th socket of
    /// systemd's socket activation (`LISTEN_FDS`, for this process by `LISTEN_PID`). TCP or
    /// Unix, whichever the socket is. [`Server::systemd_socket`] says whether systemd passed
    /// one.
    ///
    /// # Errors
    ///
    /// A descriptor that was not passed, or is not a listening TCP or Unix socket.
    #[cfg(unix)]
    pub async fn bind_inherited(self, fd: i32) -> io::Result<BoundServer> {
        let listener = Listener::inherited(fd)?;
        Ok(BoundServer {
            listener,
            config: self,
        })
    }

    /// Whether systemd passed this process listening sockets (`LISTEN_FDS`, with
    /// `LISTEN_PID` naming this process): serve on the first with
    /// [`bind_inherited(3)`](Server::bind_inherited).
    pub fn systemd_socket() -> bool {
        let pid = std::env::var("LISTEN_PID").ok();
        pid.as_deref()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p == std::process::id())
            && std::env::var("LISTEN_FDS")
                .ok()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 1)
    }
}

/// A [`Server`] with its socket bound; [`BoundServer::serve`] runs it.
pub struct BoundServer {
    listener: Listener,
    config: Server,
}

impl fmt::Debug for BoundServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundServer")
            .field("listening", &self.listener.describe())
            .field("config", &self.config)
            .finish()
    }
}

impl BoundServer {
    /// The bound address (useful after binding port 0).
    ///
    /// # Errors
    ///
    /// As `TcpListener::local_addr`; always for a Unix socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What it listens on, for a log line: `http://127.0.0.1:8000`, `https://…`, `unix:/path`.
    pub fn url(&self) -> String {
        let described = self.listener.describe();
        if described.starts_with("unix:") {
            return described;
        }
        #[cfg(feature = "tls")]
        if self.config.tls.is_some() {
            return format!("https://{described}");
        }
        format!("http://{described}")
    }
}
