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

/// Serves `app` (a helper of the test's: a receiver, a JWKS, an auth service) on
/// 127.0.0.1:0 in the background; its address.
pub async fn serve_router(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
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

/// The shared Redis the tests use (`REDIS_URL`, default 127.0.0.1:6379).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test:{name}:{}:{nanos}", std::process::id())
}

/// A Redis server of the test's own, on a free port, that it can stop and start again.
pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.resume().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers `PING`.
    pub async fn resume(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (installed by .ci/run)");
        self.child = Some(child);
        for _ in 0..500 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on port {} did not answer", self.port);
    }

    async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 7];
        conn.write_all(b"PING\r\n").await.is_ok()
            && conn.read_exact(&mut buf).await.is_ok()
            && &buf == b"+PONG\r\n"
    }

    /// Stops the server without killing it (SIGSTOP): connections stay open and nothing
    /// answers, as a stalled store.
    pub fn stall(&self) {
        self.signal("-STOP");
    }

    /// Lets a stalled server go on (SIGCONT).
    pub fn unstall(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills the server and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stalled server is woken first, so that it can be killed and reaped.
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A command's reply, through `redis-cli`.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay in front of a server (PostgreSQL, say) that can stall: while stalled it still
/// accepts connections but forwards nothing either way and closes nothing, as a store behind
/// a network that drops packets.
pub struct Relay {
    pub addr: SocketAddr,
    stalled: Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::AbortHandle,
}

impl Relay {
    /// Relays 127.0.0.1:0 to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(tokio::sync::watch::channel(false).0);
        let flag = Arc::clone(&stalled);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let flag = Arc::clone(&flag);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, flag.subscribe()),
                        pump(server_read, client_write, flag.subscribe()),
                    );
                });
            }
        })
        .abort_handle();
        Self {
            addr,
            stalled,
            task,
        }
    }

    /// `url` with its `host:port` replaced by the relay's address.
    pub fn url_through(&self, url: &str) -> String {
        let rest = url.split_once('@').map_or(url, |(_, r)| r);
        let hostport = rest
            .split_once("://")
            .map_or(rest, |(_, r)| r)
            .split('/')
            .next()
            .unwrap();
        url.replacen(hostport, &self.addr.to_string(), 1)
    }

    /// Forwards nothing from now on, on new and open connections alike.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Forwards again.
    pub fn unstall(&self) {
        self.stalled.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.stalled.send_replace(false);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // What arrived while stalled waits until the relay forwards again.
        if stalled.wait_for(|s| !*s).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The shared PostgreSQL (`DATABASE_URL`, default 127.0.0.1:5432, database `test`).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PgBouncer of the test's own in transaction mode, on a free port, in front of the shared
/// PostgreSQL (`DATABASE_URL`), with a pool of two server connections so that the test's
/// transactions are handed from one to another. Stopped when dropped.
pub struct OwnPgBouncer {
    pub port: u16,
    db: String,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl OwnPgBouncer {
    pub async fn start() -> Self {
        let upstream = database_url();
        let rest = upstream
            .split_once("://")
            .map_or(upstream.as_str(), |(_, r)| r);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, "test"));
        let db = db.split('?').next().unwrap_or("test");
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("callnext-pgbouncer-{listen}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ini = dir.join("pgbouncer.ini");
        let users = dir.join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n{db} = host={host} port={port} dbname={db}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {listen}\nauth_type = trust\n\
                 auth_file = {users}\npool_mode = transaction\ndefault_pool_size = 2\n\
                 max_client_conn = 200\nunix_socket_dir =\n",
                users = users.display(),
            ),
        )
        .unwrap();
        // Debian puts it in /usr/sbin, which a user's PATH may not have.
        let program = if std::path::Path::new("/usr/sbin/pgbouncer").exists() {
            "/usr/sbin/pgbouncer"
        } else {
            "pgbouncer"
        };
        let mut command = std::process::Command::new(program);
        // PgBouncer refuses to run as root: it switches to the database's own user.
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root {
            for file in [&dir, &ini, &users] {
                let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o777));
            }
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(&ini)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pgbouncer (Debian's package `pgbouncer`; `.ci/run provision` installs it)");
        // Owned at once: stopped and reaped on drop, a failed start included.
        let bouncer = Self {
            port: listen,
            db: db.to_owned(),
            dir,
            child,
        };
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", listen))
                .await
                .is_ok()
            {
                return bouncer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("pgbouncer on port {listen} did not listen");
    }

    /// The database through PgBouncer, with callnext's `pgbouncer=true`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}?pgbouncer=true",
            self.port, self.db
        )
    }
}

impl Drop for OwnPgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP/2 connection (cleartext, prior knowledge) to `addr`, driven in the background.
pub async fn http2(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}
