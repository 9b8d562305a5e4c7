//! Rate limits across instances: two server processes sharing one Redis, their clocks in
//! step or ten minutes apart, hold one limit between them.

mod common;

use common::{get, Server};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A configuration file with a 10/minute limit per IP in Redis, under a prefix of its own.
fn config(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("callnext-rl-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("callnext.toml");
    std::fs::write(
        &path,
        format!(
            "[middleware.rate_limit]\nstore = \"{}\"\nlimit = \"10/minute\"\nprefix = \"test:{name}:{nanos}\"\n",
            redis_url()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Fifteen requests alternating between the two: exactly ten allowed, with the remaining
/// count going down across both, and five refused with `Retry-After`.
async fn alternate(a: &Server, b: &Server) {
    let mut allowed = Vec::new();
    let mut refused = 0;
    for i in 0..15 {
        let server = if i % 2 == 0 { a } else { b };
        let (parts, body) = get(&server.url("/items/1")).await;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            header("ratelimit-policy").as_deref(),
            Some("\"10-in-1m\";q=10;w=60")
        );
        match parts.status.as_u16() {
            200 => allowed.push(header("ratelimit").unwrap()),
            429 => {
                refused += 1;
                assert_eq!(&body[..], br#"{"detail":"Too Many Requests"}"#);
                let retry: u64 = header("retry-after").unwrap().parse().unwrap();
                assert!((1..=6).contains(&retry), "{retry}");
                assert_eq!(
                    header("ratelimit").unwrap(),
                    format!("\"10-in-1m\";r=0;t={retry}")
                );
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!(refused, 5);
    let remaining: Vec<String> = allowed
        .iter()
        .map(|h| h.split(';').nth(1).unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..10).rev().map(|r| format!("r={r}")).collect();
    assert_eq!(remaining, expected);
}

#[tokio::test]
async fn two_instances_share_one_limit_through_redis() {
    let config = config("two");
    let args = ["--config", config.as_str(), "--no-simulated-io"];
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    alternate(&a, &b).await;
}

#[tokio::test]
async fn instances_whose_clocks_differ_by_minutes_agree() {
    let config = config("skew");
    let args = ["--config", config.as_str(), "--no-simulated-io"];
    // A missing program says which package provides it (`./test` installs it).
    let found = std::process::Command::new("faketime")
        .args(["-f", "+0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`faketime` is missing (Debian package `faketime`): this test runs a second server ten minutes ahead under it (`./test` installs it)"
    );
    let a = Server::start(&args).await;
    // The second instance's wall clock runs ten minutes ahead (its monotonic clock, which no
    // two machines share anyway, is left alone: timed waits would otherwise sleep for ten
    // minutes).
    let mut b = Server::start_under(
        "env",
        &["DONT_FAKE_MONOTONIC=1", "faketime", "-f", "+10m"],
        &args,
    )
    .await;
    let listening = b
        .wait_for(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening on"))
        })
        .await;
    let stamp = listening["timestamp"].as_str().expect("timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let theirs = humantime::parse_rfc3339_weak(&stamp[..19])
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        theirs >= now + 9 * 60,
        "faketime did not shift the clock: {stamp}"
    );
    alternate(&a, &b).await;
}
