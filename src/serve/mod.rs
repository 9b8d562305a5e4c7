//! [`Server`]: HTTP/1.1 and HTTP/2 (h2c) on hyper-util, with timeouts, a connection limit and
//! graceful shutdown.

mod connection;
mod shutdown;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

use crate::Response;
use connection::{ConnActivity, Watched};
pub use shutdown::shutdown_signal;

/// Server settings. Build with [`Server::new`], then [`Server::bind`].
///
/// ```no_run
/// use callnext::{serve::{shutdown_signal, Server}, Stack};
///
/// # async fn run() -> std::io::Result<()> {
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let service = Stack::new().service(app);
/// let server = Server::new().bind("127.0.0.1:8000".parse().unwrap()).await?;
/// server.serve(service, shutdown_signal()).await
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Server {
    max_connections: usize,
    header_read_timeout: Duration,
    drain_timeout: Duration,
    keep_alive: bool,
    http2: bool,
    max_header_bytes: usize,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            max_connections: 25_000,
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            keep_alive: true,
            http2: true,
            max_header_bytes: 64 * 1024,
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

    /// How long a connection may go without sending a complete request head while no request
    /// of its is being answered, before it is closed; zero turns the timeout off. Defaults to
    /// 30 s.
    ///
    /// This cuts off clients that send headers slowly (slowloris) and idle keep-alive
    /// connections. A per-connection watchdog checks twice per timeout, so such a connection
    /// is closed between one and one and a half timeouts after its last activity; a request
    /// being answered (however long its handler or streamed body takes) keeps it open. HTTP/2
    /// connections are exempt once their first request arrives. The watchdog costs a few
    /// atomic operations per request instead of a timer per request head.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// After a shutdown signal, how long in-flight requests may take to finish before the
    /// remaining connections are dropped. Defaults to 10 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// HTTP/1 keep-alive. Defaults to on.
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// Accept HTTP/2 with prior knowledge (h2c) beside HTTP/1.1. Defaults to on.
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// The largest request head (request line and headers) accepted on HTTP/1; larger ones get
    /// `431 Request Header Fields Too Large`. Values below 8 KiB (hyper's smallest read buffer)
    /// are raised to 8 KiB. Defaults to 64 KiB.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.max(8192);
        self
    }

    /// Binds the listening socket.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound (in use, not permitted); the error names the address.
    pub async fn bind(self, addr: SocketAddr) -> io::Result<BoundServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| io::Error::new(err.kind(), format!("cannot bind {addr}: {err}")))?;
        Ok(BoundServer {
            listener,
            config: self,
        })
    }
}

/// A [`Server`] with its socket bound; [`BoundServer::serve`] runs it.
pub struct BoundServer {
    listener: TcpListener,
    config: Server,
}

impl fmt::Debug for BoundServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundServer")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("config", &self.config)
            .finish()
    }
}

impl BoundServer {
    /// The bound address (useful after binding port 0).
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `service` until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish for up to the drain timeout, and returns.
    ///
    /// # Errors
    ///
    /// Never for per-connection failures (those are logged); only if the listener itself fails
    /// for good.
    pub async fn serve<S>(self, service: S, shutdown: impl Future<Output = ()>) -> io::Result<()>
    where
        S: Service<http::Request<Incoming>, Response = Response, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let Self { listener, config } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The header-read timeout is the per-connection watchdog below, not hyper's, which arms a
        // fresh timer for every request head.
        builder
            .http1()
            .header_read_timeout(None)
            .keep_alive(config.keep_alive)
            .max_buf_size(config.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        let builder = if config.http2 {
            builder
        } else {
            builder.http1_only()
        };
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);

        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
            let activity = Arc::new(ConnActivity::default());
            let watched = TowerToHyperService::new(Watched {
                inner: service.clone(),
                activity: Arc::clone(&activity),
            });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), watched)
                .into_owned();
            let conn = graceful.watch(conn);
            let header_timeout = config.header_read_timeout;
            tokio::spawn(async move {
                let result = if header_timeout.is_zero() {
                    conn.await
                } else {
                    tokio::select! {
                        result = conn => result,
                        () = activity.stalled(header_timeout) => {
                            tracing::debug!(%peer, "no request head within the header-read timeout; closing");
                            Ok(())
                        }
                    }
                };
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                drop(permit);
            });
        }

        drop(listener);
        let open = graceful.count();
        tracing::info!(
            open_connections = open,
            "shutting down: no longer accepting"
        );
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(config.drain_timeout) => tracing::warn!(
                drain_timeout = ?config.drain_timeout,
                "drain timeout reached; dropping remaining connections"
            ),
        }
        Ok(())
    }
}
