//! Reloading the configuration without a restart, under traffic: SIGHUP and
//! `POST /admin/reload` swap in the stack of the file as it is now, requests never fail, an
//! invalid file keeps the running configuration with one log line naming file, line and key.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Server;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const TOKEN: &str = "reload-token-0123456789";

/// Version `v` of the file: a response header, a CORS origin and a rate limit that say `v`.
fn config(v: u32) -> String {
    format!(
        r#"
[admin]
token = "{TOKEN}"

[middleware.set_header]
response_set = {{ "x-version" = "{v}" }}

[middleware.cors]
allow_origins = ["https://v{v}.example"]

[middleware.rate_limit]
limit = "{}/minute"
"#,
        100_000 + v
    )
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// The version header, the CORS origin allowed for `https://v{v}.example`, and the quota the
/// rate limit reports.
async fn seen(client: &HttpClient, url: &str, v: u32) -> (u16, String, bool, String) {
    let req = http::Request::get(url)
        .header("origin", format!("https://v{v}.example"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = client.request(req).await.expect("request");
    let (parts, body) = res.into_parts();
    let _ = body.collect().await;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (
        parts.status.as_u16(),
        header("x-version"),
        header("access-control-allow-origin") == format!("https://v{v}.example"),
        header("ratelimit-policy"),
    )
}

#[tokio::test]
async fn ten_reloads_under_traffic_fail_no_request_and_each_shows_within_a_second() {
    let dir = std::env::temp_dir().join(format!("callnext-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("callnext.toml");
    std::fs::write(&path, config(0)).unwrap();
    let mut server = Server::start(&[
        "--config",
        path.to_str().unwrap(),
        "--no-simulated-io",
        "--log-level",
        "info",
    ])
    .await;
    let url = server.url("/items/1");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    assert_eq!(seen(&client, &url, 0).await.1, "0");

    // Traffic on keep-alive connections all along: every answer must be a 200.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = match client.get(url.parse().unwrap()).await {
                        Ok(res) => {
                            let status = res.status();
                            res.into_body().collect().await.is_ok() && status == 200
                        }
                        Err(_) => false,
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let pid = server.child.id().to_string();
    let mut slowest = Duration::ZERO;
    for v in 1..=10u32 {
        // Each reload lands in the middle of traffic: some requests since the last one first.
        let before = sent.load(Ordering::Relaxed);
        while sent.load(Ordering::Relaxed) < before + 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        std::fs::write(&path, config(v)).unwrap();
        let started = Instant::now();
        if v % 2 == 1 {
            let status = std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap();
            assert!(status.success());
        } else {
            let req = http::Request::post(server.url("/admin/reload"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = client.request(req).await.unwrap();
            assert_eq!(res.status(), 200, "v{v}");
        }
        // Visible: the header, the CORS origin and the limit of version v, all at once.
        loop {
            let (status, version, cors, policy) = seen(&client, &url, v).await;
            assert_eq!(status, 200);
            if version == v.to_string() {
                assert!(cors, "v{v}: the header changed but not the CORS origin");
                assert!(
                    policy.contains(&format!("q={}", 100_000 + v)),
                    "v{v}: {policy}"
                );
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "v{v} never showed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for task in traffic {
        task.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("10 reloads: {sent} requests, {failed} failed, slowest change seen after {slowest:?}");
    assert!(sent >= 200, "{sent}");
    assert_eq!(failed, 0);

    // An invalid file: one line with file, line and key; the running configuration stays.
    std::fs::write(
        &path,
        config(11).replace("limit = \"100011/minute\"", "limit = \"lots\""),
    )
    .unwrap();
    let req = http::Request::post(server.url("/admin/reload"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 422);
    let refused = server
        .wait_for(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("configuration not reloaded"))
        })
        .await;
    let message = refused["message"].as_str().unwrap();
    let expected = format!("{}:12: `middleware.rate_limit.limit`", path.display());
    assert!(message.contains(&expected), "{message}");
    assert_eq!(seen(&client, &url, 10).await.1, "10");

    // Without the token, no reload.
    let res = client
        .request(
            http::Request::post(server.url("/admin/reload"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // What only a restart changes is named.
    std::fs::write(
        &path,
        format!("{}\n[server]\nmax_connections = 77\n", config(12)),
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let warned = server
        .wait_for(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("keep their running values until a restart"))
        })
        .await;
    assert!(
        warned["message"].as_str().unwrap().contains("[server]"),
        "{warned}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
