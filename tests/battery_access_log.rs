//! The access log over real sockets: every field, 499 for clients gone before the end, the
//! entry that answered early, the text formats, drops counted when the writer falls behind,
//! and the configuration file.

mod common;

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::{routing::get, routing::post, Router};
use callnext::config::{Config, Registry};
use callnext::middleware::access_log::{AccessLog, Format, OnFull, SharedWriter, Sink};
use callnext::middleware::limit::BodyLimit;
use callnext::middleware::SetRequestId;
use callnext::serve::Server;
use callnext::{Stack, TestClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A writer that collects lines in memory; `hold` blocks it until released.
#[derive(Default)]
struct Collected {
    bytes: Vec<u8>,
}

impl Write for Collected {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn memory_log(format: Format) -> (AccessLog, Arc<Mutex<Collected>>) {
    let collected = Arc::new(Mutex::new(Collected::default()));
    let log = AccessLog::builder()
        .format(format)
        .sink(Sink::Writer(SharedWriter(collected.clone())))
        .build()
        .unwrap();
    (log, collected)
}

fn lines(log: &AccessLog, collected: &Mutex<Collected>) -> Vec<String> {
    assert!(log.handle().flush(Duration::from_secs(10)));
    String::from_utf8_lossy(&collected.lock().unwrap().bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn app(entered: mpsc::UnboundedSender<()>) -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/forever",
            get(move || {
                let entered = entered.clone();
                async move {
                    let _ = entered.send(());
                    std::future::pending::<&str>().await
                }
            }),
        )
        .route(
            "/endless",
            get(|| async {
                let chunks = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((
                        Ok::<_, std::convert::Infallible>(bytes::Bytes::from("tick\n")),
                        (),
                    ))
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
}

async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_json_record_has_every_field() {
    let (log, collected) = memory_log(Format::Json);
    let (tx, _rx) = mpsc::unbounded_channel();
    let stack = Stack::new().hook(SetRequestId::new()).hook(log.clone());
    let running = common::spawn(Server::new(), stack.service(app(tx))).await;
    let reply = exchange(
        running.addr,
        b"POST /echo?q=1&password=hunter2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: probe/1\r\nReferer: https://ref.example/\r\nX-Request-ID: log-1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(reply.ends_with("hello"), "{reply}");
    running.stop().await;

    let lines = lines(&log, &collected);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let r: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert!(r["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r["client_ip"], "127.0.0.1");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["route"], "/echo");
    assert_eq!(r["path"], "/echo");
    assert_eq!(r["query"], "q=1&password=REDACTED");
    assert_eq!(r["protocol"], "HTTP/1.1");
    assert_eq!(r["status"], 200);
    assert_eq!(r["bytes_in"], 5);
    assert_eq!(r["bytes_out"], 5);
    assert!(r["ttfb_ms"].as_f64().unwrap() >= 0.0);
    assert!(r["duration_ms"].as_f64().unwrap() >= r["ttfb_ms"].as_f64().unwrap());
    assert_eq!(r["request_id"], "log-1");
    assert_eq!(r["user_agent"], "probe/1");
    assert_eq!(r["referer"], "https://ref.example/");
    assert_eq!(r["answered_by"], serde_json::Value::Null);
    assert!(!lines[0].contains("hunter2"));
}

#[tokio::test]
async fn clients_gone_before_the_end_are_499() {
    let (log, collected) = memory_log(Format::Json);
    let (tx, mut entered) = mpsc::unbounded_channel();
    let running = common::spawn(
        Server::new(),
        Stack::new().hook(log.clone()).service(app(tx)),
    )
    .await;

    // Gone before the response head.
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    entered.recv().await.unwrap();
    drop(stream);

    // Gone in the middle of an endless body.
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("tick") {
        let n = stream.read(&mut buf).await.unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream);

    // Both records arrive once the server notices.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records: Vec<serde_json::Value> = lines(&log, &collected)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if records.len() == 2 || std::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(records.len(), 2, "{records:?}");
    let forever = records.iter().find(|r| r["path"] == "/forever").unwrap();
    assert_eq!(forever["status"], 499);
    let endless = records.iter().find(|r| r["path"] == "/endless").unwrap();
    assert_eq!(endless["status"], 499);
    assert!(endless["bytes_out"].as_u64().unwrap() >= 5);
    running.stop().await;
}

#[tokio::test]
async fn the_entry_that_answered_early_is_named_and_text_formats() {
    let (log, collected) = memory_log(Format::Combined);
    let (tx, _rx) = mpsc::unbounded_channel();
    let stack = Stack::new()
        .hook(log.clone())
        .hook(BodyLimit::new(4).unwrap());
    let client = TestClient::new(stack.service(app(tx)));
    client
        .post("/echo")
        .header("content-length", "10")
        .header("user-agent", "ua \"quoted\"")
        .body("0123456789")
        .await;
    client.get("/items/1?x=1").await;
    let lines = lines(&log, &collected);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
    assert!(
        lines[0].ends_with("] \"POST /echo HTTP/1.1\" 413 35 \"-\" \"ua \\\"quoted\\\"\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with("\"GET /items/1?x=1 HTTP/1.1\" 200 4 \"-\" \"-\""),
        "{}",
        lines[1]
    );

    let (json, collected) = memory_log(Format::Json);
    let stack = Stack::new()
        .hook(json.clone())
        .hook(BodyLimit::new(4).unwrap());
    let (tx, _rx) = mpsc::unbounded_channel();
    TestClient::new(stack.service(app(tx)))
        .post("/echo")
        .header("content-length", "10")
        .body("0123456789")
        .await;
    let record: serde_json::Value = serde_json::from_str(&lines_of(&json, &collected)[0]).unwrap();
    assert_eq!(record["answered_by"], "body_limit");
    assert_eq!(record["status"], 413);

    let (common_log, collected) = memory_log(Format::Common);
    let (tx, _rx) = mpsc::unbounded_channel();
    TestClient::new(Stack::new().hook(common_log.clone()).service(app(tx)))
        .get("/items/2")
        .header("user-agent", "x")
        .await;
    let line = &lines_of(&common_log, &collected)[0];
    assert!(line.ends_with("\"GET /items/2 HTTP/1.1\" 200 4"), "{line}");
}

fn lines_of(log: &AccessLog, collected: &Mutex<Collected>) -> Vec<String> {
    lines(log, collected)
}

/// A writer that blocks until the test opens its gate.
struct Gated {
    gate: Arc<(Mutex<bool>, Condvar)>,
    bytes: Arc<Mutex<Vec<u8>>>,
    entered: std::sync::mpsc::Sender<()>,
}

impl Write for Gated {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.entered.send(());
        let (open, cv) = &*self.gate;
        let mut guard = open.lock().unwrap();
        while !*guard {
            guard = cv.wait(guard).unwrap();
        }
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_and_says_so() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let writer = Gated {
        gate: Arc::clone(&gate),
        bytes: Arc::clone(&bytes),
        entered: entered_tx,
    };
    let log = AccessLog::builder()
        .queue(2)
        .sink(Sink::Writer(SharedWriter(Arc::new(Mutex::new(writer)))))
        .build()
        .unwrap();
    let handle = log.handle();
    let (tx, _rx) = mpsc::unbounded_channel();
    let client = TestClient::new(Stack::new().hook(log).service(app(tx)));
    // The first record reaches the writer, which then sticks in its write.
    client.get("/items/1").await;
    tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();
    // With the writer stuck, the queue holds two more; the rest are dropped.
    for _ in 0..20 {
        client.get("/items/1").await;
    }
    assert_eq!(handle.dropped(), 18);
    let (open, cv) = &*gate;
    *open.lock().unwrap() = true;
    cv.notify_all();
    assert!(handle.flush(Duration::from_secs(10)));
    let text = String::from_utf8_lossy(&bytes.lock().unwrap()).into_owned();
    let records = text.lines().filter(|l| l.contains("\"path\"")).count() as u64;
    assert_eq!(records + handle.dropped(), 21, "{text}");
    assert!(
        text.lines()
            .any(|l| l == format!("{{\"dropped\":{}}}", handle.dropped())),
        "{text}"
    );
}

#[tokio::test]
async fn a_full_queue_makes_requests_wait_when_configured() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let writer = Gated {
        gate: Arc::clone(&gate),
        bytes: Arc::clone(&bytes),
        entered: entered_tx,
    };
    let log = AccessLog::builder()
        .queue(2)
        .on_full(OnFull::Block)
        .sink(Sink::Writer(SharedWriter(Arc::new(Mutex::new(writer)))))
        .build()
        .unwrap();
    let handle = log.handle();
    let (tx, _rx) = mpsc::unbounded_channel();
    let client = TestClient::new(Stack::new().hook(log).service(app(tx)));
    client.get("/items/1").await;
    tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();
    // The writer is stuck: two records fit in the queue.
    client.get("/items/1").await;
    client.get("/items/1").await;
    // The next request waits for room before it runs.
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.get("/items/1").await.status() }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "a request went on with the queue full"
    );
    let (open, cv) = &*gate;
    *open.lock().unwrap() = true;
    cv.notify_all();
    assert_eq!(waiting.await.unwrap(), 200);
    assert!(handle.flush(Duration::from_secs(10)));
    let text = String::from_utf8_lossy(&bytes.lock().unwrap()).into_owned();
    let records = text.lines().filter(|l| l.contains("\"path\"")).count();
    assert_eq!((records, handle.dropped()), (4, 0), "{text}");
}

#[tokio::test]
async fn from_the_configuration_file() {
    let dir = std::env::temp_dir().join(format!("callnext-alog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let text = format!(
        "[middleware.access_log]\nformat = \"common\"\npath = {:?}\nrotate = \"10MB\"\nmax_files = 3\n",
        path.display().to_string()
    );
    let stack = Config::parse(&text, "app.toml", &[])
        .unwrap()
        .stack(&Registry::new())
        .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let client = TestClient::new(stack.service(app(tx)));
    client.get("/items/3").await;
    client.get("/health/live").await; // excluded by default
    assert!(stack.flush(Duration::from_secs(10)));
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(
        written.contains("\"GET /items/3 HTTP/1.1\" 200 4"),
        "{written}"
    );

    let mistakes = [
        (
            "[middleware.access_log]\nformat = \"xml\"\n",
            "app.toml:2: `middleware.access_log.format`: expected `json`, `combined` or `common`, got `xml`",
        ),
        (
            "[middleware.access_log]\nrotate = \"weekly\"\n",
            "app.toml:2: `middleware.access_log.rotate`: expected `never`, `hourly`, `daily` or a size such as \"100MB\", got `weekly`",
        ),
        (
            "[middleware.access_log]\nqueue = 0\n",
            "app.toml:2: `middleware.access_log.queue`: invalid `queue`: must hold at least 1 record",
        ),
        (
            "[middleware.access_log]\non_full = \"wait\"\n",
            "app.toml:2: `middleware.access_log.on_full`: expected `drop` or `block`, got `wait`",
        ),
    ];
    for (text, expected) in mistakes {
        let err = Config::parse(text, "app.toml", &[])
            .unwrap()
            .stack(&Registry::new())
            .unwrap_err();
        assert_eq!(err.to_string(), expected, "{text}");
    }
    let missing = format!(
        "[middleware.access_log]\npath = {:?}\n",
        dir.join("no/such/dir/a.log").display().to_string()
    );
    let err = Config::parse(&missing, "app.toml", &[])
        .unwrap()
        .stack(&Registry::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("app.toml:2: `middleware.access_log.path`: invalid `path`: cannot open "),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
