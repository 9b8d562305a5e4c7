//! Helpers shared by the integration tests: a real server on 127.0.0.1:0, an HTTP client,
//! and a log capture.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use callnext::serve::Server;
use callnext::{Middleware, Next, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; dropping `shutdown` (or sending on it) stops it.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server did not stop")
            .expect("server task panicked")
            .expect("server failed");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub async fn spawn<S>(server: Server, service: S) -> Running
where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let bound = server
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind");
    let addr = bound.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(service, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        shutdown: Some(tx),
        task,
    }
}

pub struct Reply {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn get(url: &str) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let res = tokio::time::timeout(Duration::from_secs(10), client.get(url.parse().unwrap()))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// All log output of this test binary, captured by one global subscriber (a thread-local
/// subscriber races with tracing's callsite cache when tests run in parallel). Tests look for
/// lines carrying names unique to them.
#[derive(Clone)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn capture() -> Self {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs(Arc::default());
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            logs
        })
        .clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A struct middleware that sets `header: 1` on every response it sees.
pub struct Mark(pub &'static str);

impl Middleware for Mark {
    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        let mut res = next.run(req).await;
        res.headers_mut().insert(
            http::HeaderName::from_static(self.0),
            http::HeaderValue::from_static("1"),
        );
        res
    }
}

/// Whether the log has a line with `needle` that names `middleware` (text or JSON format).
pub fn names_middleware(line: &str, middleware: &str) -> bool {
    line.contains(&format!("middleware=\"{middleware}\""))
        || line.contains(&format!("middleware={middleware} "))
        || line.ends_with(&format!("middleware={middleware}"))
}

/// The stack of a configuration text, or its error's one line.
pub fn stack_from_config(text: &str) -> Result<callnext::Stack, String> {
    callnext::config::Config::parse(text, "app.toml", &[])
        .map_err(|e| e.to_string())?
        .stack(&callnext::config::Registry::new())
        .map_err(|e| e.to_string())
}

/// A later entry that answers 429 for `/limited`, like a rate limit.
pub fn limited(stack: callnext::Stack) -> callnext::Stack {
    stack.on_request("limiter", |req: &mut Request| {
        if req.uri().path() == "/limited" {
            Err(callnext::HttpError::new(
                http::StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
            ))
        } else {
            Ok(())
        }
    })
}
