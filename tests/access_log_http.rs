//! The access log's HTTP sink against a receiver started here on 127.0.0.1: batches arrive
//! complete, in order and gzipped, as JSON lines or a Loki push; a receiver that fails is
//! retried, one that stalls costs drops (counted, noted in the log) and never request time;
//! closing sends what is queued, within its time.

mod common;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use callnext::middleware::access_log::{AccessLog, HttpSink, Shipping, Sink};
use callnext::{Stack, TestClient};
use serde_json::Value;

/// What the receiver does with the next request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    /// Answers 500 this many more times, then accepts.
    Fail(u32),
    /// Never answers.
    Stall,
}

struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone)]
struct Receiver {
    mode: Arc<Mutex<Mode>>,
    batches: Arc<Mutex<Vec<Received>>>,
    calls: Arc<Mutex<u32>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *r.calls.lock().unwrap() += 1;
    let mode = *r.mode.lock().unwrap();
    match mode {
        Mode::Stall => std::future::pending().await,
        Mode::Fail(n) => {
            *r.mode.lock().unwrap() = if n > 1 {
                Mode::Fail(n - 1)
            } else {
                Mode::Accept
            };
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Mode::Accept => {
            let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                body.to_vec()
            };
            r.batches.lock().unwrap().push(Received { headers, body });
            StatusCode::NO_CONTENT
        }
    }
}

async fn receiver() -> (String, Receiver) {
    let r = Receiver {
        mode: Arc::new(Mutex::new(Mode::Accept)),
        batches: Arc::default(),
        calls: Arc::default(),
    };
    let app = Router::new()
        .route("/ingest", post(receive))
        .with_state(r.clone());
    let addr = common::serve_router(app).await;
    (format!("http://{addr}/ingest"), r)
}

/// Flushes off the test's thread (the receiver runs on the test's runtime).
async fn flush(log: &AccessLog, timeout: Duration) -> bool {
    let handle = log.handle();
    tokio::task::spawn_blocking(move || handle.flush(timeout))
        .await
        .unwrap()
}

fn client(log: &AccessLog) -> TestClient<callnext::StackService> {
    let app = Router::new().route("/items/{id}", get(|| async { "item" }));
    TestClient::new(Stack::new().hook(log.clone()).service(app))
}

/// The `path` of every JSON record line of the received batches, in order.
fn paths(batches: &[Received]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            String::from_utf8(b.body.clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| {
            serde_json::from_str::<Value>(&line).unwrap()["path"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn batches_arrive_complete_in_order_and_gzipped() {
    let (url, r) = receiver().await;
    let sink = HttpSink::new(url)
        .batch(100, 1 << 20, Duration::from_millis(200))
        .header("authorization", "Bearer ship-it");
    let log = AccessLog::builder().sink(Sink::Http(sink)).build().unwrap();
    let client = client(&log);
    for i in 0..250 {
        assert_eq!(client.get(&format!("/items/{i}")).await.status(), 200);
    }
    assert!(flush(&log, Duration::from_secs(30)).await);
    let batches = r.batches.lock().unwrap();
    let expected: Vec<String> = (0..250).map(|i| format!("/items/{i}")).collect();
    assert_eq!(paths(&batches), expected);
    for b in batches.iter() {
        assert!(b.body.ends_with(b"\n"));
        assert!(b.body.iter().filter(|&&c| c == b'\n').count() <= 100);
        assert_eq!(b.headers["content-type"], "application/x-ndjson");
        assert_eq!(b.headers["content-encoding"], "gzip");
        assert_eq!(b.headers["authorization"], "Bearer ship-it");
    }
    assert_eq!(log.handle().written(), 250);
    assert_eq!(log.handle().dropped(), 0);
}

#[tokio::test]
async fn loki_gets_one_stream_with_its_labels_and_ordered_values() {
    let (url, r) = receiver().await;
    let sink = HttpSink::new(url)
        .shipping(Shipping::Loki)
        .label("job", "orders")
        .label("env", "test")
        .gzip(false);
    let log = AccessLog::builder().sink(Sink::Http(sink)).build().unwrap();
    let client = client(&log);
    for i in 0..3 {
        client.get(&format!("/items/{i}")).await;
    }
    assert!(flush(&log, Duration::from_secs(30)).await);
    let batches = r.batches.lock().unwrap();
    let mut values = Vec::new();
    for b in batches.iter() {
        assert_eq!(b.headers["content-type"], "application/json");
        assert!(b.headers.get("content-encoding").is_none());
        let push: Value = serde_json::from_slice(&b.body).unwrap();
        let streams = push["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(
            streams[0]["stream"],
            serde_json::json!({"job": "orders", "env": "test"})
        );
        values.extend(streams[0]["values"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(values.len(), 3);
    let stamps: Vec<u128> = values
        .iter()
        .map(|v| v[0].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    let paths: Vec<String> = values
        .iter()
        .map(|v| {
            serde_json::from_str::<Value>(v[1].as_str().unwrap()).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(paths, ["/items/0", "/items/1", "/items/2"]);
}

#[tokio::test]
async fn a_failing_receiver_is_retried() {
    let (url, r) = receiver().await;
    *r.mode.lock().unwrap() = Mode::Fail(2);
    let log = AccessLog::builder()
        .sink(Sink::Http(HttpSink::new(url).retries(3)))
        .build()
        .unwrap();
    let client = client(&log);
    for i in 0..5 {
        client.get(&format!("/items/{i}")).await;
    }
    assert!(flush(&log, Duration::from_secs(30)).await);
    assert_eq!(*r.calls.lock().unwrap(), 3, "two failures, then the batch");
    assert_eq!(paths(&r.batches.lock().unwrap()).len(), 5);
    assert_eq!(log.handle().unsent(), 0);
}

#[tokio::test]
async fn a_stalled_receiver_costs_drops_never_request_time() {
    let (url, r) = receiver().await;
    *r.mode.lock().unwrap() = Mode::Stall;
    let log = AccessLog::builder()
        .queue(50)
        .sink(Sink::Http(
            HttpSink::new(url)
                .retries(1)
                .timeout(Duration::from_millis(200))
                .batch(10, 1 << 20, Duration::from_millis(50)),
        ))
        .build()
        .unwrap();
    let client = client(&log);
    // Requests are answered while the writer waits on the receiver: 300 of them, more than
    // the queue holds. (The bound is generous: it only catches requests that wait for the log.)
    let requests = async {
        for i in 0..300 {
            assert_eq!(client.get(&format!("/items/{i}")).await.status(), 200);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), requests)
        .await
        .expect("requests waited for the log");
    flush(&log, Duration::from_secs(30)).await;
    let handle = log.handle();
    assert!(handle.unsent() > 0);
    assert!(handle.dropped() >= handle.unsent());
    assert_eq!(handle.written(), 0);

    // The receiver is back: the next batch carries the note of what was lost.
    *r.mode.lock().unwrap() = Mode::Accept;
    client.get("/items/after").await;
    assert!(flush(&log, Duration::from_secs(30)).await);
    let batches = r.batches.lock().unwrap();
    let text: String = batches
        .iter()
        .map(|b| String::from_utf8(b.body.clone()).unwrap())
        .collect();
    let noted: u64 = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["dropped"].as_u64())
        .sum();
    assert_eq!(noted, handle.dropped(), "{text}");
    assert_eq!(paths(&batches), ["/items/after"]);
}

/// A log whose batches wait a minute, after 20 requests: only a flush or the end sends them.
async fn twenty_queued(mode: Mode) -> (AccessLog, Receiver) {
    let (url, r) = receiver().await;
    *r.mode.lock().unwrap() = mode;
    let log = AccessLog::builder()
        .sink(Sink::Http(HttpSink::new(url).batch(
            1000,
            1 << 20,
            Duration::from_secs(60),
        )))
        .build()
        .unwrap();
    let requests = client(&log);
    for i in 0..20 {
        requests.get(&format!("/items/{i}")).await;
    }
    (log, r)
}

#[tokio::test]
async fn closing_sends_what_is_queued_or_says_what_it_could_not() {
    // A healthy receiver: closing (at shutdown) sends everything, without a flush first.
    let (log, r) = twenty_queued(Mode::Accept).await;
    let handle = log.handle();
    tokio::task::spawn_blocking(move || handle.close())
        .await
        .unwrap();
    assert_eq!(paths(&r.batches.lock().unwrap()).len(), 20);

    // A stalled one: the flush gives up at its deadline, closing makes one short last try,
    // and what was not sent is counted.
    let (log, _r) = twenty_queued(Mode::Stall).await;
    let handle = log.handle();
    let flushed = tokio::task::spawn_blocking({
        let handle = handle.clone();
        move || {
            let flushed = handle.flush(Duration::from_millis(300));
            handle.close();
            flushed
        }
    })
    .await
    .unwrap();
    assert!(!flushed);
    assert_eq!(handle.unsent(), 20);
    assert_eq!(handle.written(), 0);
}

#[tokio::test]
async fn records_that_cannot_be_sent_go_to_the_fallback_file() {
    let (url, r) = receiver().await;
    *r.mode.lock().unwrap() = Mode::Fail(100);
    let path = std::env::temp_dir().join(format!("callnext-ship-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let log = AccessLog::builder()
        .sink(Sink::Http(
            HttpSink::new(url).retries(0).fallback_file(&path),
        ))
        .build()
        .unwrap();
    let client = client(&log);
    for i in 0..4 {
        client.get(&format!("/items/{i}")).await;
    }
    // Kept in the file, not received: the flush says so.
    assert!(!flush(&log, Duration::from_secs(30)).await);
    let kept = std::fs::read_to_string(&path).unwrap();
    assert_eq!(kept.lines().count(), 4, "{kept}");
    assert_eq!(log.handle().unsent(), 0);
    assert_eq!(log.handle().dropped(), 0);
}

#[test]
fn the_configuration_table_builds_the_sink_and_names_its_mistakes() {
    let ok = "[middleware.access_log]\nsink = \"loki\"\nurl = \"http://127.0.0.1:3100/loki/api/v1/push\"\nlabels = { job = \"orders\" }\nheaders = { \"x-scope-orgid\" = \"tenant-1\" }\nbatch = 500\nbatch_wait = \"2s\"\n";
    let stack = common::stack_from_config(ok).unwrap();
    assert_eq!(stack.describe()[0].name, "access_log");
    let err = |text: &str| common::stack_from_config(text).unwrap_err();
    assert_eq!(
        err("[middleware.access_log]\nsink = \"kafka\"\n"),
        "app.toml:2: `middleware.access_log.sink`: expected `file`, `http` (JSON lines) or `loki`, got `kafka`"
    );
    assert_eq!(
        err("[middleware.access_log]\nsink = \"http\"\nurl = \"vector:8080\"\n"),
        "app.toml:3: `middleware.access_log.url`: invalid `url`: expected an http:// or https:// URL, got `vector:8080`"
    );
    assert_eq!(
        err("[middleware.access_log]\nsink = \"http\"\nurl = \"http://v/\"\nbatch = 0\n"),
        "app.toml:4: `middleware.access_log.batch`: invalid `batch`: a batch needs at least 1 record, 1 byte and a wait above zero"
    );
}
