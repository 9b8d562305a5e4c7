//! [`BoundServer::serve`]: the accept loop, one task per connection, and the drain.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinSet;
use tower::Service;

use super::connection::{Asked, ConnActivity, Connections, InFlight, Stall};
use super::counted::Counted;
use super::hyper_conn::{builder, http1_builder, Conn};
use super::listener::Accepted;
use super::watched::Watched;
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
    /// HTTP/1.1 and HTTP/2, told apart by the preface.
    builder: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 alone, when HTTP/2 is off (hyper-util's auto builder would still answer an
    /// HTTP/2 preface on a connection that allows upgrades).
    http1: hyper::server::conn::http1::Builder,
    config: Server,
    in_flight: InFlight,
    connections: Connections,
    /// Upgraded sockets (WebSockets), which outlive their connection's task.
    upgraded: super::slot::Upgraded,
    /// Turns true when the server begins to shut down.
    draining: watch::Receiver<bool>,
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
        let (drain, draining) = watch::channel(false);
        let shared = Arc::new(Shared {
            builder: builder(&config),
            http1: http1_builder(&config),
            in_flight: InFlight::default(),
            connections: Connections::default(),
            upgraded: super::slot::Upgraded::default(),
            draining,
            #[cfg(feature = "tls")]
            tls,
            config,
        });
        let config = &shared.config;
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let mut tasks = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);

        loop {
            let permit = match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(TryAcquireError::NoPermits) => None,
                Err(TryAcquireError::Closed) => break,
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
            let permit = match permit {
                Some(permit) => permit,
                None => {
                    // Every slot is taken and a client waits: the connection idle the longest
                    // gives up its slot (when none is idle, the client waits for a slot).
                    if shared.connections.evict_longest_idle() {
                        tracing::debug!("all connection slots taken; closing the longest idle");
                    }
                    tokio::select! {
                        permit = Arc::clone(&permits).acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            // Finished connections' results are dropped here, so the set holds live ones only.
            while tasks.try_join_next().is_some() {}
            let shared = Arc::clone(&shared);
            let service = service.clone();
            tasks.spawn(async move {
                match accepted {
                    Accepted::Tcp(stream, peer) => {
                        shared.connection(service, stream, Some(peer), permit).await;
                    }
                    #[cfg(unix)]
                    Accepted::Unix(stream) => {
                        shared.connection(service, stream, None, permit).await;
                    }
                }
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
        let _ = drain.send(true);
        shared.connections.drain_all();
        let drained = tokio::time::timeout(config.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
            // Upgraded sockets (WebSockets) hold their slots past their connection's task.
            let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
            let _ = permits.acquire_many(all).await;
        })
        .await;
        if drained.is_ok() {
            tracing::info!("all connections closed");
        } else {
            let cut_requests = shared.in_flight.load(Relaxed);
            let cut_connections = tasks.len() + shared.upgraded.cut_all();
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

/// Sleeps until `at`, or for ever when it is `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Shared {
    /// One connection, start to end (TLS handshake first when configured).
    async fn connection<S, I>(
        &self,
        service: S,
        io: I,
        peer: Option<std::net::SocketAddr>,
        permit: OwnedSemaphorePermit,
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
                Ok(Ok(stream)) => self.http(service, stream, peer, true, permit).await,
                Ok(Err(err)) => tracing::debug!(?peer, error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
            }
            return;
        }
        self.http(service, io, peer, false, permit).await;
    }

    async fn http<S, I>(
        &self,
        service: S,
        io: I,
        peer: Option<std::net::SocketAddr>,
        tls: bool,
        permit: OwnedSemaphorePermit,
    ) where
        S: AppService,
        I: Io,
    {
        let activity = Arc::new(ConnActivity::new(&self.in_flight, Some(permit)));
        let _registered = self.connections.register(&activity);
        let disconnect = super::Disconnect::default();
        let _closed = super::disconnect::CloseOnDrop(Arc::clone(&disconnect.0));
        let watched = TowerToHyperService::new(Watched {
            inner: service,
            activity: Arc::clone(&activity),
            peer,
            tls,
            disconnect,
            body_deadline: (!self.config.body_read_timeout.is_zero())
                .then_some((self.config.body_read_timeout, self.config.body_min_rate)),
        });
        let io = TokioIo::new(Counted {
            io,
            activity: Arc::clone(&activity),
        });
        let conn = if self.config.http2 {
            Conn::Auto {
                conn: self
                    .builder
                    .serve_connection_with_upgrades(io, watched)
                    .into_owned(),
            }
        } else {
            Conn::Http1 {
                conn: self.http1.serve_connection(io, watched).with_upgrades(),
            }
        };
        let mut conn = std::pin::pin!(conn);
        // A drain that began before this connection was registered (`drain_all` did not see
        // it) is seen here: the flag goes up before `drain_all` runs.
        if *self.draining.borrow() {
            activity.drain();
        }
        let mut stalled = std::pin::pin!(activity.stalled(
            self.config.header_read_timeout,
            self.config.keep_alive_timeout
        ));
        // Set once the connection is asked to close: it finishes what it has in flight (the
        // drain timeout bounds a shutdown); an idle one closing with a GOAWAY gets a few
        // seconds for it.
        let mut closing = false;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let result = loop {
            let why = tokio::select! {
                result = conn.as_mut() => break result,
                asked = std::future::poll_fn(|cx| activity.poll_asked(cx)), if !closing => {
                    match asked {
                        Asked::Drain => {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                            continue;
                        }
                        Asked::Evict => Stall::Idle,
                    }
                }
                stall = &mut stalled, if !closing => stall,
                () = sleep_until_some(give_up_at) => break Ok(()),
            };
            closing = true;
            if why == Stall::Head {
                tracing::debug!(?peer, "request head too slow; closing");
                break Ok(());
            }
            if !activity.is_busy() && !activity.is_http2() {
                tracing::debug!(?peer, "idle connection closed");
                break Ok(());
            }
            // HTTP/2 (a GOAWAY), or a request that began meanwhile (answered, then closed).
            tracing::debug!(?peer, "idle connection closing gracefully");
            conn.as_mut().graceful_shutdown();
            if !activity.is_busy() {
                give_up_at = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                // The GOAWAY is sent: the slot is free for the client that waits, whenever
                // the peer closes.
                activity.slot.release();
            }
        };
        if activity.slot.is_upgraded() {
            self.upgraded.keep(&activity);
        }
        if let Err(err) = result {
            tracing::debug!(?peer, error = %err, "connection ended with an error");
        }
    }
}
