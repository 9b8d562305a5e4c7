//! The binary's `[telemetry]`: a collector started here gets the request's trace over
//! OTLP/HTTP (JSON), with the seed's middlewares as child spans, when the server stops.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_traces_reach_the_collector() {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(
                |State(received): State<Arc<Mutex<Vec<serde_json::Value>>>>, body: Bytes| async move {
                    received
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    "{}"
                },
            ),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("callnext-otel-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("callnext.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry]\nendpoint = \"http://{collector}\"\nprotocol = \"http/json\"\nservice_name = \"seed\"\n"
        ),
    )
    .unwrap();
    tokio::task::spawn_blocking(move || {
        let config = config.display().to_string();
        let (_, answers) = common::serve_then_stop(
            &["--log-format", "json", "--config", &config],
            &[common::raw_get("/items/3")],
        );
        assert!(answers[0].starts_with(b"HTTP/1.1 200"));
    })
    .await
    .unwrap();

    let received = received.lock().unwrap();
    let spans: Vec<&serde_json::Value> = received
        .iter()
        .flat_map(|r| r["resourceSpans"].as_array().unwrap())
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap())
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"GET /items/{item_id}"), "{names:?}");
    // The seed's two middlewares and the app, under the server span.
    for name in ["timing", "another", "app"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let service = received[0]["resourceSpans"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == "service.name")
        .map(|kv| kv["value"]["stringValue"].clone());
    assert_eq!(service, Some(serde_json::json!("seed")));
}
