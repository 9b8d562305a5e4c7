//! [`BoundServer::serve`]: the accept loop, one task per connection, and the drain.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::Service;

use super::connection::{ConnActivity, Counted, InFlight, Watched};
use super::listener::Accepted;
use super::{BoundServer, Server};
use crate::Response;

/// The app's service as a connection task needs it (one name for the bounds).
trait AppService:
    Service<
        http::Request<Incoming>,
        Response = Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> AppService for S where
    S: Service<
            http::Request<Incoming>,
            Response = Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A connection's byte stream: TCP, TLS over TCP, or a Unix socket.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for I {}

/// What every connection task of one server shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    config: Server,
    in_flight: InFlight,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl BoundServer {
    /// Serves `service` until `shutdown` resolves; then turns readiness off, stops accepting,
    /// lets in-flight requests finish for up to the drain timeout (HTTP/1 responses sent
    /// meanwhile carry `Connection: close`, HTTP/2 connections get a GOAWAY), cuts the
    /// connections left, and returns once their tasks are gone.
    ///
    /// # Errors
    ///
    /// Never for per-connection failures (those are logged); only if the TLS configuration
    /// cannot be used.
    pub async fn serve<S>(self, service: S, shutdown: impl Future<Output = ()>) -> io::Result<()>
    where
        S: Service<http::Request<Incoming>, Response = Response, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let Self { listener, config } = self;
        #[cfg(feature = "tls")]
        let tls = match &config.tls {
            Some(tls) => Some(tokio_rustls::TlsAcceptor::from(
                tls.server_config(config.http2)
                    .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            builder: builder(&config),
            in_flight: InFlight::default(),
            #[cfg(feature = "tls")]
            tls,
            config,
        });
        let config = &shared.config;
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let graceful = GracefulShutdown::new();
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);

        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let accepted = tokio::select! {
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
            // Finished connections' results are dropped here, so the set holds live ones only.
            while tasks.try_join_next().is_some() {}
            let shared = Arc::clone(&shared);
            let watcher = graceful.watcher();
            let service = service.clone();
            tasks.spawn(async move {
                match accepted {
                    Accepted::Tcp(stream, peer) => {
                        shared
                            .connection(service, stream, Some(peer), watcher)
                            .await;
                    }
                    #[cfg(unix)]
                    Accepted::Unix(stream) => {
                        shared.connection(service, stream, None, watcher).await
                    }
                }
                drop(permit);
            });
        }

        config.readiness.set(false);
        let listening = listener.describe();
        drop(listener);
        while tasks.try_join_next().is_some() {}
        tracing::info!(
            listening = %listening,
            open_connections = tasks.len(),
            in_flight_requests = shared.in_flight.load(Relaxed),
            "shutting down: no longer accepting; draining"
        );
        let drained = tokio::time::timeout(config.drain_timeout, async {
            graceful.shutdown().await;
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_ok() {
            tracing::info!("all connections closed");
        } else {
            let cut_requests = shared.in_flight.load(Relaxed);
            let cut_connections = tasks.len();
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            tracing::warn!(
                drain_timeout = ?config.drain_timeout,
                cut_requests,
                cut_connections,
                "drain timeout reached; cut the requests still in flight"
            );
        }
        Ok(())
    }
}

/// hyper's connection builder with the server's settings.
fn builder(config: &Server) -> auto::Builder<TokioExecutor> {
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
    if config.http2 {
        builder
    } else {
        builder.http1_only()
    }
}

impl Shared {
    /// One connection, start to end (TLS handshake first when configured).
    async fn connection<S, I>(
        &self,
        service: S,
        io: I,
        peer: Option<std::net::SocketAddr>,
        watcher: Watcher,
    ) where
        S: AppService,
        I: Io,
    {
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.tls {
            let handshake_timeout = if self.config.header_read_timeout.is_zero() {
                Duration::from_secs(30)
            } else {
                self.config.header_read_timeout
            };
            match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                Ok(Ok(stream)) => self.http(service, stream, peer, true, watcher).await,
                Ok(Err(err)) => tracing::debug!(?peer, error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
            }
            return;
        }
        self.http(service, io, peer, false, watcher).await;
    }

    async fn http<S, I>(
        &self,
        service: S,
        io: I,
        peer: Option<std::net::SocketAddr>,
        tls: bool,
        watcher: Watcher,
    ) where
        S: AppService,
        I: Io,
    {
        let activity = Arc::new(ConnActivity::new(&self.in_flight));
        let disconnect = super::Disconnect::default();
        let _closed = super::disconnect::CloseOnDrop(Arc::clone(&disconnect.0));
        let watched = TowerToHyperService::new(Watched {
            inner: service,
            activity: Arc::clone(&activity),
            peer,
            tls,
            disconnect,
        });
        let io = TokioIo::new(Counted {
            io,
            activity: Arc::clone(&activity),
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(io, watched)
            .into_owned();
        let conn = watcher.watch(conn);
        let result = tokio::select! {
            result = conn => result,
            () = activity.stalled(self.config.header_read_timeout, self.config.keep_alive_timeout) => {
                tracing::debug!(?peer, "idle or slow connection past its timeout; closing");
                Ok(())
            }
        };
        if let Err(err) = result {
            tracing::debug!(?peer, error = %err, "connection ended with an error");
        }
    }
}
