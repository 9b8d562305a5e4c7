//! run with: cargo run --example own_battery --features redis
//! (needs a Redis on 127.0.0.1:6379, or REDIS_URL; then open http://127.0.0.1:3000/_callnext/,
//! curl localhost:3000/items/1 a few times, stop with Ctrl-C, and see `redis-cli lrange audit 0 -1`)
//!
//! A battery of your own, as a member of the family: an audit trail that batches a line per
//! request and writes the batch to a Redis list. It offers its capabilities as callnext's own
//! batteries do: its store (shown on the live page with its health and latency), a flush (the
//! batch still held is written at shutdown), its kind.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{routing::get, Router};
use callnext::admin::{Admin, LivePage};
use callnext::backends::Backend;
use callnext::battery::Capabilities;
use callnext::serve::{shutdown_signal, Server};
use callnext::{Middleware, Next, Request, Response, Stack};
use futures_util::FutureExt;

/// An audit trail in a Redis list, written in batches.
#[derive(Clone)]
struct Audit {
    client: redis::Client,
    url: String,
    key: String,
    batch: Arc<Mutex<Vec<String>>>,
    /// Lines written per batch.
    size: usize,
}

impl Audit {
    fn new(url: &str, key: &str, size: usize) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            url: url.to_owned(),
            key: key.to_owned(),
            batch: Arc::default(),
            size,
        })
    }

    /// Writes the lines held so far.
    async fn write(&self) -> redis::RedisResult<()> {
        let lines = std::mem::take(&mut *self.batch.lock().unwrap());
        if lines.is_empty() {
            return Ok(());
        }
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        redis::cmd("RPUSH")
            .arg(&self.key)
            .arg(lines)
            .query_async::<()>(&mut conn)
            .await
    }
}

impl Middleware for Audit {
    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        let line = format!("{} {}", req.method(), req.uri().path());
        let res = next.run(req).await;
        let full = {
            let mut batch = self.batch.lock().unwrap();
            batch.push(format!("{line} {}", res.status().as_u16()));
            batch.len() >= self.size
        };
        if full {
            if let Err(err) = self.write().await {
                tracing::warn!(%err, "audit batch not written");
            }
        }
        res
    }

    fn capabilities(&self) -> Capabilities {
        let client = self.client.clone();
        let store = Backend::new("redis", &self.url, move || {
            let client = client.clone();
            async move {
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut conn).await
            }
            .boxed()
        });
        let audit = self.clone();
        Capabilities::new()
            .kind("audit")
            .store(store)
            .flush(move |timeout| {
                // The drain calls this from a blocking thread: a runtime of its own to write.
                let audit = audit.clone();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                runtime.is_ok_and(|rt| {
                    rt.block_on(tokio::time::timeout(timeout, audit.write()))
                        .is_ok_and(|written| written.is_ok())
                })
            })
    }
}

fn app(page: &LivePage) -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .merge(Admin::new().live_page(page).router())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let audit = Audit::new(&url, "audit", 100).map_err(std::io::Error::other)?;
    let page = LivePage::new();
    let stack = Stack::new().middleware(audit).live(&page);
    let service = stack.service(app(&page));
    println!("listening on http://127.0.0.1:3000 (the live page at /_callnext/)");
    Server::new()
        .bind("127.0.0.1:3000".parse().unwrap())
        .await?
        .serve(service, shutdown_signal())
        .await?;
    // What the audit trail still holds is written before the process ends.
    let flushed = tokio::task::spawn_blocking(move || stack.flush(Duration::from_secs(5)))
        .await
        .unwrap_or(false);
    println!("audit trail flushed: {flushed}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use callnext::TestClient;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_is_on_the_live_page_and_the_batch_is_flushed_at_shutdown() {
        let url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let key = format!("test:own-battery:{}", std::process::id());
        let audit = Audit::new(&url, &key, 1000).unwrap();
        let page = LivePage::new();
        let stack = Stack::new().middleware(audit.clone()).live(&page);
        assert_eq!(stack.to_string(), "0 audit (struct)\n");

        // Served by the real server, stopped as the binary stops it.
        let bound = Server::new()
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = bound.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(bound.serve(stack.service(app(&page)), async move {
            let _ = stopped.await;
        }));
        for id in 1..=3 {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            conn.write_all(
                format!("GET /items/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            conn.read_to_string(&mut out).await.unwrap();
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        }

        // The live page shows the store, used by the entry, and up.
        let client = TestClient::new(stack.service(app(&page)));
        let mut backend = serde_json::Value::Null;
        for _ in 0..500 {
            let doc: serde_json::Value = client.get("/_callnext/api/stack").await.json();
            backend = doc["stacks"][0]["backends"][0].clone();
            if backend["up"] == true {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(backend["kind"], "redis", "{backend}");
        assert_eq!(backend["used_by"], "audit", "{backend}");
        assert_eq!(backend["up"], true, "{backend}");

        // Nothing written yet: the batch holds the lines until shutdown.
        let mut conn = audit
            .client
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let len: usize = redis::cmd("LLEN")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(len, 0);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        let flushed = tokio::task::spawn_blocking(move || stack.flush(Duration::from_secs(10)))
            .await
            .unwrap();
        assert!(flushed);
        let lines: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        // The page's own requests went through the stack too.
        let items: Vec<&String> = lines.iter().filter(|l| l.contains("/items/")).collect();
        assert_eq!(
            items,
            ["GET /items/1 200", "GET /items/2 200", "GET /items/3 200"]
        );
    }
}
