//! Reloading the configuration without a restart: on SIGHUP (or `POST /admin/reload`), the
//! file is read again, a new stack is built and swapped in for new requests; requests in
//! flight finish on the stack they started on.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tower::Service;

use super::{Config, FileError, Registry};
use crate::{Response, ResponseFuture, Stack, StackService};

/// What reads the configuration again (the file, then whatever overrides it).
pub(crate) type Reread = Arc<dyn Fn() -> Result<Config, FileError> + Send + Sync>;

/// The service a reload swaps: each request runs on the stack in effect when it arrived.
#[derive(Clone)]
pub(crate) struct Swappable(pub(crate) Arc<ArcSwap<StackService>>);

impl<B> Service<http::Request<B>> for Swappable
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> ResponseFuture {
        self.0.load().call_shared(req)
    }
}

/// What a reload needs from the running server: how to build a stack like the first one, and
/// where the stacks built so far are kept (each is flushed and waited for at the drain).
pub(crate) struct Reloader {
    pub(crate) reread: Reread,
    pub(crate) registry: Registry,
    pub(crate) app: axum::Router,
    #[cfg(feature = "prometheus")]
    pub(crate) metrics: Option<crate::metrics::Metrics>,
    pub(crate) page: Option<crate::admin::LivePage>,
    pub(crate) current: Arc<ArcSwap<StackService>>,
    pub(crate) running: Mutex<Config>,
    /// The stacks a reload built, each beside the service it serves through; one whose service
    /// is gone (no request left on it) is flushed and let go at the next reload.
    pub(crate) stacks: Arc<Mutex<Vec<Served>>>,
}

impl Reloader {
    /// Reads the configuration again and swaps in the stack it builds. A mistake keeps the
    /// running configuration and is logged in one line with its file, line and key; settings
    /// that only a restart changes are named.
    pub(crate) fn reload(&self) -> bool {
        let config = match (self.reread)() {
            Ok(config) => config,
            Err(err) => {
                tracing::error!("configuration not reloaded, the running one stays: {err}");
                return false;
            }
        };
        let stack = match self.stack(&config) {
            Ok(stack) => stack,
            Err(err) => {
                tracing::error!("configuration not reloaded, the running one stays: {err}");
                return false;
            }
        };
        let service = match stack.try_service(self.app.clone()) {
            Ok(service) => service,
            Err(err) => {
                tracing::error!(
                    "configuration not reloaded, the running one stays: {}: {err}",
                    config.source.origin
                );
                return false;
            }
        };
        let service = Arc::new(service);
        let serving = Arc::downgrade(&service);
        self.current.store(service);
        {
            let mut stacks = self.stacks.lock().unwrap_or_else(PoisonError::into_inner);
            // Stacks no request runs on any more: their access logs written, then dropped.
            stacks.retain(|(stack, service)| {
                service.strong_count() > 0 || !stack.flush(std::time::Duration::from_secs(5))
            });
            stacks.push((stack, serving));
        }
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let fixed = needs_restart(&running, &config);
        *running = config;
        drop(running);
        if fixed.is_empty() {
            tracing::info!("configuration reloaded");
        } else {
            tracing::warn!(
                "configuration reloaded; these keep their running values until a restart: {}",
                fixed.join(", ")
            );
        }
        true
    }

    /// The stack `config` describes, recording where the first one did.
    fn stack(&self, config: &Config) -> Result<Stack, FileError> {
        #[allow(unused_mut)]
        let mut stack = config.stack(&self.registry)?;
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = &self.metrics {
            metrics.hand_over_stack(&config.stack.name);
            stack = stack.metrics(metrics);
        }
        if let Some(page) = &self.page {
            stack = stack.live(page);
        }
        Ok(stack)
    }
}

/// A stack a reload built, and the service it serves through.
pub(crate) type Served = (Stack, std::sync::Weak<StackService>);

/// The stacks the reloads built, for the drain at shutdown.
pub(crate) fn take_stacks(stacks: &Mutex<Vec<Served>>) -> impl Iterator<Item = Stack> {
    std::mem::take(&mut *stacks.lock().unwrap_or_else(PoisonError::into_inner))
        .into_iter()
        .map(|(stack, _)| stack)
}

/// The settings that differ between `old` and `new` and that only a restart applies: the
/// listener and the server's limits, the admin routes, the log, the tracing exporter.
pub(crate) fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut fixed = Vec::new();
    // The trusted proxies are the stack's: they change with it.
    let listener = |config: &Config| {
        let mut server = config.server.clone();
        server.trusted_proxies.clear();
        server.forwarded_header.clear();
        server
    };
    if listener(old) != listener(new) {
        fixed.push("[server] (listen address, TLS files, workers, limits)");
    }
    if old.admin != new.admin {
        fixed.push("[admin]");
    }
    if old.log != new.log {
        fixed.push("[log]");
    }
    if old.telemetry != new.telemetry {
        fixed.push("[telemetry]");
    }
    fixed
}

/// A request to reload, with where to say whether it did (none for SIGHUP).
pub(crate) type Request = Option<tokio::sync::oneshot::Sender<bool>>;
/// Where requests to reload are sent.
pub(crate) type Trigger = tokio::sync::mpsc::Sender<Request>;

/// The channel of reload requests.
pub(crate) fn channel() -> (Trigger, tokio::sync::mpsc::Receiver<Request>) {
    tokio::sync::mpsc::channel(4)
}

/// `POST /admin/reload` for a bearer of `token`: 200 once reloaded, 422 when the configuration
/// was refused (the log says why), 401 without the token.
pub(crate) fn route(token: &super::Secret, trigger: &Trigger) -> axum::Router {
    use axum::response::IntoResponse;
    use http::StatusCode;
    use subtle::ConstantTimeEq;
    let token = token.clone();
    let trigger = trigger.clone();
    axum::Router::new().route(
        "/admin/reload",
        axum::routing::post(move |headers: http::HeaderMap| {
            let token = token.clone();
            let trigger = trigger.clone();
            async move {
                let given = headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if !bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
                    let mut res =
                        crate::HttpError::new(StatusCode::UNAUTHORIZED, "Not authenticated")
                            .into_response();
                    res.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer"),
                    );
                    return res;
                }
                let (reply, done) = tokio::sync::oneshot::channel();
                if trigger.send(Some(reply)).await.is_err() || !done.await.unwrap_or(false) {
                    return crate::HttpError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Configuration not reloaded; the log says why",
                    )
                    .into_response();
                }
                axum::Json(serde_json::json!({"detail": "Reloaded"})).into_response()
            }
        }),
    )
}

/// The task that reloads on each request, and the one that turns SIGHUP into a request.
pub(crate) fn spawn(
    reloader: Arc<Reloader>,
    trigger: Trigger,
    mut requests: tokio::sync::mpsc::Receiver<Request>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let worker = tokio::spawn(async move {
        while let Some(reply) = requests.recv().await {
            let reloader = Arc::clone(&reloader);
            // Reading the file and building the stack block: off the runtime's threads.
            let done = tokio::task::spawn_blocking(move || reloader.reload())
                .await
                .unwrap_or(false);
            if let Some(reply) = reply {
                let _ = reply.send(done);
            }
        }
    });
    let mut tasks = vec![worker];
    #[cfg(unix)]
    tasks.push(tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload through POST /admin/reload only");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            if trigger.send(None).await.is_err() {
                return;
            }
        }
    }));
    #[cfg(not(unix))]
    drop(trigger);
    tasks
}
