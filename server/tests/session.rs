//! The example app's session demo, served by the binary: items added through one request are
//! listed by the next that brings the cookie; a missing secret stops the start with one line.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::Server;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn call(method: &str, url: &str, cookie: Option<&str>) -> (Option<String>, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let set = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (set, String::from_utf8_lossy(&body).into_owned())
}

fn config(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("callnext-session-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("callnext.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn the_session_demo_keeps_a_visitors_items() {
    let secret = "s".repeat(64);
    let path = config(
        "demo",
        &format!("[middleware.session]\nsecret = \"{secret}\"\n"),
    );
    let server = Server::start(&["--config", &path, "--no-simulated-io"]).await;
    let (cookie, body) = call("POST", &server.url("/session/items/3"), None).await;
    assert_eq!(body, r#"{"items":[3]}"#);
    let cookie = cookie.expect("a session cookie");
    let (again, body) = call("POST", &server.url("/session/items/5"), Some(&cookie)).await;
    assert_eq!(body, r#"{"items":[3,5]}"#);
    assert!(again.is_none(), "the same session keeps its cookie");
    let (_, body) = call("GET", &server.url("/session"), Some(&cookie)).await;
    assert_eq!(body, r#"{"items":[3,5]}"#);
    let (_, body) = call("GET", &server.url("/session"), None).await;
    assert_eq!(body, r#"{"items":[]}"#);
}

#[test]
fn a_missing_secret_is_one_line_and_exit_code_2() {
    let path = config("nosecret", "[middleware.session]\n");
    let out = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args(["--config", &path, "--check-config"])
        .env_remove("CALLNEXT_SESSION_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim_end().ends_with(
            "`middleware.session.secret`: invalid `secret`: must be at least 64 bytes, got 0 (set it, or CALLNEXT_SESSION_SECRET)"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn two_instances_share_sessions_through_redis() {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let secret = "t".repeat(64);
    let path = config(
        "shared",
        &format!(
            "[middleware.session]\nstore = \"{redis}\"\nsecret = \"{secret}\"\nprefix = \"test:session:{nanos}\"\n"
        ),
    );
    let args = ["--config", path.as_str(), "--no-simulated-io"];
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    let (cookie, body) = call("POST", &a.url("/session/items/1"), None).await;
    assert_eq!(body, r#"{"items":[1]}"#);
    let cookie = cookie.expect("a session cookie");
    let (_, body) = call("POST", &b.url("/session/items/2"), Some(&cookie)).await;
    assert_eq!(body, r#"{"items":[1,2]}"#);
    let (_, body) = call("GET", &a.url("/session"), Some(&cookie)).await;
    assert_eq!(body, r#"{"items":[1,2]}"#);
}

#[tokio::test]
async fn two_instances_share_sessions_through_postgres() {
    let database = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let secret = "p".repeat(64);
    let path = config(
        "shared-postgres",
        &format!("[middleware.session]\nstore = \"{database}\"\nsecret = \"{secret}\"\n"),
    );
    let args = ["--config", path.as_str(), "--no-simulated-io"];
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    let (cookie, body) = call("POST", &a.url("/session/items/1"), None).await;
    assert_eq!(body, r#"{"items":[1]}"#);
    let cookie = cookie.expect("a session cookie");
    let (again, body) = call("POST", &b.url("/session/items/2"), Some(&cookie)).await;
    assert_eq!(body, r#"{"items":[1,2]}"#);
    assert!(again.is_none(), "the other instance keeps the same session");
    let (_, body) = call("GET", &a.url("/session"), Some(&cookie)).await;
    assert_eq!(body, r#"{"items":[1,2]}"#);
}

#[tokio::test]
async fn a_session_keeps_only_the_most_recent_items() {
    let secret = "k".repeat(64);
    let path = config(
        "bounded",
        &format!("[middleware.session]\nsecret = \"{secret}\"\n"),
    );
    let server = Server::start(&["--config", &path, "--no-simulated-io"]).await;
    let (cookie, _) = call("POST", &server.url("/session/items/0"), None).await;
    let cookie = cookie.expect("a session cookie");
    for i in 1..=104 {
        call(
            "POST",
            &server.url(&format!("/session/items/{i}")),
            Some(&cookie),
        )
        .await;
    }
    let (_, body) = call("GET", &server.url("/session"), Some(&cookie)).await;
    let items: Vec<i64> = serde_json::from_str::<serde_json::Value>(&body).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(items, (5..=104).collect::<Vec<_>>());
}
