//! The binary's access log shipped over HTTP (`sink = "http"`): a receiver started here gets
//! every request's record, gzipped JSON lines, and the records still queued at SIGTERM arrive
//! before the process exits.

mod common;

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_the_receiver_and_the_queue_is_sent_at_shutdown() {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/ingest",
            post(
                |State(received): State<Arc<Mutex<Vec<String>>>>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    assert_eq!(headers["content-encoding"], "gzip");
                    assert_eq!(headers["x-token"], "t0");
                    let mut text = String::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_string(&mut text)
                        .unwrap();
                    received
                        .lock()
                        .unwrap()
                        .extend(text.lines().map(str::to_owned));
                    axum::http::StatusCode::OK
                },
            ),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("callnext-shipping-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("callnext.toml");
    // A batch waits a minute: nothing is sent before the shutdown unless 5 records are queued.
    std::fs::write(
        &config,
        format!(
            "[middleware.access_log]\nsink = \"http\"\nurl = \"http://{receiver}/ingest\"\nbatch = 5\nbatch_wait = \"60s\"\nheaders = {{ \"x-token\" = \"t0\" }}\n"
        ),
    )
    .unwrap();
    let served = tokio::task::spawn_blocking(move || {
        let config = config.display().to_string();
        let requests: Vec<Vec<u8>> = (0..7)
            .map(|i| common::raw_get(&format!("/items/{i}")))
            .collect();
        let (_, answers) =
            common::serve_then_stop(&["--log-format", "json", "--config", &config], &requests);
        assert!(answers.iter().all(|a| a.starts_with(b"HTTP/1.1 200")));
    });
    served.await.unwrap();
    let lines = received.lock().unwrap().clone();
    let paths: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..7).map(|i| format!("/items/{i}")).collect();
    assert_eq!(paths, expected);
}
