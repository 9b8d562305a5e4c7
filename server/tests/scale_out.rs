//! Two server processes behind one Redis Cluster: they hold one rate limit and one set of
//! sessions between them, and when the master holding a session is killed under load, both
//! answer 503 for it until the cluster has promoted the replica, then read it again.

mod common;
#[path = "../../tests/common/redis_ha.rs"]
mod redis_ha;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{get, Server};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis_ha::OwnCluster;

/// A configuration file: a 10/minute limit on `/items` and sessions, both in the cluster.
fn config(cluster: &OwnCluster) -> String {
    let dir = std::env::temp_dir().join(format!("callnext-scale-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("callnext.toml");
    let url = cluster.url();
    std::fs::write(
        &path,
        format!(
            "[middleware.rate_limit]\nstore = \"{url}\"\nlimit = \"10/minute\"\n\
             paths = [\"/items\"]\n\n\
             [middleware.session]\nstore = \"{url}\"\nsecret = \"{}\"\n",
            "k".repeat(64)
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// A request's status, `Set-Cookie` (its `name=value`) and body.
async fn call(method: &str, url: &str, cookie: Option<&str>) -> (u16, Option<String>, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(req.body(Empty::new()).unwrap()),
    )
    .await
    .expect("an answer within 30 s")
    .unwrap();
    let status = res.status().as_u16();
    let set = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, set, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn two_servers_share_limits_and_sessions_through_a_cluster_that_fails_over() {
    let mut cluster = OwnCluster::start().await;
    let config = config(&cluster);
    let args = ["--config", config.as_str(), "--no-simulated-io"];
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;

    // One limit between them: ten of fifteen alternating requests.
    let mut statuses = Vec::new();
    for i in 0..15 {
        let server = if i % 2 == 0 { &a } else { &b };
        statuses.push(get(&server.url("/items/1")).await.0.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );

    // One session: written through one, read through the other.
    let (status, cookie, body) = call("POST", &a.url("/session/items/3"), None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"items":[3]}"#));
    let cookie = cookie.expect("a session cookie");
    let (_, _, body) = call("GET", &b.url("/session"), Some(&cookie)).await;
    assert_eq!(body, r#"{"items":[3]}"#);

    // The master holding the session is killed while both servers read it.
    let holder = cluster.master_holding("*session*");
    cluster.replicate(holder).await;
    let started = Instant::now();
    cluster.kill(holder);
    let mut answers = Vec::new();
    let mut back_since: Option<Instant> = None;
    loop {
        let (on_a, on_b) = (a.url("/session"), b.url("/session"));
        let (x, y) = tokio::join!(
            call("GET", &on_a, Some(&cookie)),
            call("GET", &on_b, Some(&cookie)),
        );
        let both_read = [&x, &y]
            .iter()
            .all(|(status, _, body)| *status == 200 && body == r#"{"items":[3]}"#);
        answers.push((started.elapsed(), x.0, y.0));
        for (status, _, body) in [&x, &y] {
            assert!(
                (*status == 200 && body == r#"{"items":[3]}"#) || *status == 503,
                "{status} {body}"
            );
        }
        match (both_read, back_since) {
            (true, None) => back_since = Some(Instant::now()),
            (true, Some(at)) if at.elapsed() > Duration::from_secs(1) => break,
            (false, _) => back_since = None,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the session was not read again within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = answers
        .iter()
        .filter(|(_, x, y)| *x == 503 || *y == 503)
        .count();
    let recovered = answers
        .iter()
        .rev()
        .find(|(_, x, y)| *x == 503 || *y == 503)
        .map_or(Duration::ZERO, |(at, ..)| *at);
    eprintln!(
        "cluster failover under two servers: {} request pairs, {refused} with a 503, the \
         session read by both again {recovered:?} after the kill",
        answers.len()
    );
    assert_ne!(cluster.master_holding("*session*"), holder);
}
