//! One call from a configuration file to a served application: [`Config::serve`], the path
//! the `callnext` binary itself takes.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use super::log_init::{init_tracing, log_dropped};
use super::reload::{self, Reread};
use super::{Config, FileError, Registry};
use crate::admin::{Admin, Readiness};
use crate::middleware::access_log::LineWriter;
use crate::serve::{shutdown_signal, BoundServer};
use crate::Stack;

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;
type OnListening = Box<dyn FnOnce(&str) + Send>;

impl Config {
    /// Serves `app` with everything the file says: `[server]` (address or Unix socket, TLS,
    /// limits and timeouts), `[admin]` (metrics, health, the live page, on the app's listener
    /// or their own `bind`), `[log]` (level and format), the stack of `[stack]` and
    /// `[middleware.*]` in front of `app`, and a drain on SIGINT/SIGTERM that lets in-flight
    /// requests, background tasks and the access log finish within `drain_timeout`.
    ///
    /// Await it inside your runtime, or call [`Serve::run`] from a plain `main` to get the
    /// runtime `[server] workers` asks for. The returned [`Serve`] takes the application's own
    /// middlewares by name ([`Serve::registry`]), another shutdown signal, and a callback with
    /// the address once bound.
    ///
    /// ```no_run
    /// use axum::{routing::get, Router};
    /// use callnext::config::Config;
    ///
    /// #[tokio::main]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let app = Router::new().route("/", get(|| async { "Hello World" }));
    ///     Config::load("app.toml", &[])?.serve(app).await?;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// The log subscriber `[log]` describes is installed as the process's global one, unless
    /// the application already set one (or turned it off with [`Serve::logging`]).
    /// Metrics need the `prometheus` feature; without it `[admin] metrics_path` is not served.
    pub fn serve(self, app: axum::Router) -> Serve {
        Serve {
            config: self,
            app,
            registry: Registry::new(),
            shutdown: None,
            on_listening: None,
            logging: true,
            reread: None,
        }
    }
}

/// An application about to be served as its configuration says; made by [`Config::serve`].
///
/// Awaiting it serves in the caller's runtime until the shutdown signal, then drains.
#[must_use = "a `Serve` does nothing until it is awaited or `run`"]
pub struct Serve {
    config: Config,
    app: axum::Router,
    registry: Registry,
    shutdown: Option<Shutdown>,
    on_listening: Option<OnListening>,
    logging: bool,
    reread: Option<Reread>,
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .field("logging", &self.logging)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// The registry the stack is built with: callnext's kinds plus the application's own
    /// middlewares by name (the default holds callnext's kinds only).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Stop on `signal` instead of SIGINT/SIGTERM ([`shutdown_signal`]); the drain follows.
    pub fn shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// Calls `f` with the application's URL (`http://127.0.0.1:8000`, `unix:/run/app.sock`)
    /// once its listener is bound: the port chosen for `port = 0`, say.
    pub fn on_listening(mut self, f: impl FnOnce(&str) + Send + 'static) -> Self {
        self.on_listening = Some(Box::new(f));
        self
    }

    /// Reload without a restart: on SIGHUP, and on `POST /admin/reload` from a bearer of
    /// `[admin] token` when one is set, `reread` gives the configuration again (the file read
    /// anew, with whatever overrides it) and the stack it builds serves new requests, while
    /// requests in flight finish on the old one. A mistake keeps the running configuration
    /// and is logged in one line with its file, line and key; `[server]`, `[admin]`, `[log]`
    /// and `[telemetry]` changes wait for a restart (the log line names them), except the
    /// trusted proxies, which the stack applies.
    ///
    /// ```no_run
    /// use callnext::config::Config;
    ///
    /// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
    /// Config::load("app.toml", &[])?
    ///     .serve(app)
    ///     .reload(|| Config::load("app.toml", &[]))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn reload(
        mut self,
        reread: impl Fn() -> Result<Config, FileError> + Send + Sync + 'static,
    ) -> Self {
        self.reread = Some(Arc::new(reread));
        self
    }

    /// Whether to install the log subscriber `[log]` describes (default true). Turn it off
    /// when the application sets up `tracing` itself.
    pub fn logging(mut self, on: bool) -> Self {
        self.logging = on;
        self
    }

    /// Serves on a runtime of its own, blocking the thread until the drain is done: the
    /// current-thread runtime for `[server] workers = 1`, otherwise the multi-threaded one
    /// with that many workers (0: one per core). What the `callnext` binary calls.
    ///
    /// # Errors
    ///
    /// As awaiting the `Serve`, and a runtime that cannot start.
    pub fn run(mut self) -> io::Result<()> {
        let log = self.init_logging();
        let mut runtime = match self.config.server.workers {
            1 => tokio::runtime::Builder::new_current_thread(),
            workers => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                if workers > 0 {
                    builder.worker_threads(workers);
                }
                builder
            }
        };
        let runtime = runtime.enable_all().build()?;
        let result = runtime.block_on(self.serve());
        drop(runtime);
        if let Some(log) = log {
            log_dropped(&log);
            log.close();
        }
        result
    }

    /// Installs the `[log]` subscriber unless told not to or one is already set; the
    /// non-blocking writer it writes through, if any.
    fn init_logging(&mut self) -> Option<LineWriter> {
        if !std::mem::take(&mut self.logging) {
            return None;
        }
        let log = init_tracing(&self.config);
        if self.config.stack.debug {
            crate::install_panic_location_hook();
            tracing::warn!("debug mode: panics' messages and locations are sent to clients");
        }
        log
    }

    /// Builds the stack and the admin routes, binds, serves until the shutdown signal, then
    /// drains: connections, background tasks, the access log.
    async fn serve(self) -> io::Result<()> {
        let Self {
            config,
            app,
            registry,
            shutdown,
            on_listening,
            logging: _,
            reread,
        } = self;
        let invalid = |err: FileError| io::Error::new(io::ErrorKind::InvalidInput, err);
        let mut stack = config.stack(&registry).map_err(invalid)?;
        #[cfg(feature = "prometheus")]
        let mut recorded = None;
        let server = config.server().map_err(invalid)?;
        let readiness = Readiness::new();
        let mut admin = Admin::new().readiness(&readiness);
        #[cfg(feature = "prometheus")]
        if config.admin.metrics_path != "off" {
            let metrics = crate::metrics::Metrics::new();
            stack = stack.metrics(&metrics);
            admin = admin
                .metrics(&metrics)
                .metrics_path(&config.admin.metrics_path)
                .map_err(|err| invalid(config.error("admin.metrics_path", err)))?;
            recorded = Some(metrics);
        }
        let page = config.live_page().map_err(invalid)?;
        if let Some(page) = &page {
            stack = stack.live(page);
            admin = admin.live_page(page);
            tracing::info!(path = %page.path(), "live stack page on");
        }
        let reloads = reread.is_some().then(reload::channel);
        let mut admin_routes = admin.router();
        if let Some((trigger, _)) = &reloads {
            if !config.admin.token.is_empty() {
                admin_routes = admin_routes.merge(reload::route(&config.admin.token, trigger));
            }
        }
        let mut app = app;
        let admin_addr = if config.admin.bind.is_empty() {
            // Inside the stack, so its middlewares protect the admin routes too.
            app = app.merge(admin_routes.clone());
            None
        } else {
            let addr: SocketAddr = config.admin.bind.parse().map_err(|err| {
                invalid(config.error("admin.bind", format!("not an address: {err}")))
            })?;
            Some(addr)
        };
        for entry in stack.describe() {
            tracing::info!(index = entry.index, name = %entry.name, kind = %entry.kind, "middleware");
        }
        let service = stack
            .try_service(app.clone())
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
        let drain_timeout = config.server.drain_timeout.get();
        let background = stack.background();

        let server = server.readiness(&readiness);
        let bound = if config.server.fd >= 0 {
            bind_inherited(server, config.server.fd).await?
        } else if crate::serve::Server::systemd_socket() {
            tracing::info!("serving on the socket systemd passed (LISTEN_FDS)");
            bind_inherited(server, 3).await?
        } else if config.server.uds.is_empty() {
            server
                .bind(SocketAddr::new(config.server.host, config.server.port))
                .await?
        } else {
            bind_unix(server, &config.server.uds).await?
        };
        let url = bound.url();
        tracing::info!("listening on {url}");
        if let Some(f) = on_listening {
            f(&url);
        }

        // One signal stops both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let admin_task = match admin_addr {
            None => None,
            Some(addr) => {
                let admin_server = crate::serve::Server::new().bind(addr).await?;
                tracing::info!("admin routes on {}", admin_server.url());
                let service = Stack::new().name("admin").service(admin_routes);
                Some(tokio::spawn(admin_server.serve(service, until_stopped())))
            }
        };
        let signal = shutdown.unwrap_or_else(|| Box::pin(shutdown_signal()));
        let stopper = tokio::spawn(async move {
            signal.await;
            let _ = stop.send(true);
        });
        let reloaded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let served = match (reread, reloads) {
            (Some(reread), Some((trigger, requests))) => {
                let current = Arc::new(arc_swap::ArcSwap::from_pointee(service));
                let reloader = reload::Reloader {
                    reread,
                    registry,
                    app,
                    #[cfg(feature = "prometheus")]
                    metrics: recorded,
                    page,
                    current: Arc::clone(&current),
                    running: std::sync::Mutex::new(config.clone()),
                    stacks: Arc::clone(&reloaded),
                };
                let tasks = reload::spawn(Arc::new(reloader), trigger, requests);
                let served = bound
                    .serve(reload::Swappable(current), until_stopped())
                    .await;
                for task in tasks {
                    task.abort();
                }
                served
            }
            _ => bound.serve(service, until_stopped()).await,
        };
        stopper.abort();
        if let Some(task) = admin_task {
            task.await.map_err(io::Error::other)??;
        }
        served?;
        // Background tasks of the responses sent get the drain timeout too, on every stack a
        // reload swapped in.
        let mut stacks = vec![stack];
        stacks.extend(reload::take_stacks(&reloaded));
        let mut cut = background.wait(drain_timeout).await;
        for later in &stacks[1..] {
            cut += later.background().wait(drain_timeout).await;
        }
        if cut > 0 {
            tracing::warn!(
                cut,
                "background tasks still running at the drain timeout; cut"
            );
        }
        // Every response sent is in the access log before this returns.
        if !tokio::task::spawn_blocking(move || {
            // Every stack flushed, whether or not an earlier one made it in time.
            stacks
                .iter()
                .filter(|stack| !stack.flush(drain_timeout))
                .count()
                == 0
        })
        .await
        .unwrap_or(false)
        {
            tracing::warn!("the access log could not write everything within the drain timeout");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            let log = self.init_logging();
            let drain_timeout = self.config.server.drain_timeout.get();
            let result = self.serve().await;
            if let Some(log) = log {
                // The subscriber stays installed: its lines so far are written, the writer
                // stays open for what the process logs after.
                let _ = tokio::task::spawn_blocking(move || {
                    log.flush_lines(drain_timeout);
                    log_dropped(&log);
                })
                .await;
            }
            result
        })
    }
}

#[cfg(unix)]
async fn bind_unix(server: crate::serve::Server, path: &str) -> io::Result<BoundServer> {
    server.bind_unix(path).await
}

#[cfg(unix)]
async fn bind_inherited(server: crate::serve::Server, fd: i32) -> io::Result<BoundServer> {
    server.bind_inherited(fd).await
}

#[cfg(not(unix))]
async fn bind_unix(_: crate::serve::Server, _: &str) -> io::Result<BoundServer> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "Unix sockets need a Unix system",
    ))
}

#[cfg(not(unix))]
async fn bind_inherited(_: crate::serve::Server, _: i32) -> io::Result<BoundServer> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "inherited sockets need a Unix system",
    ))
}
