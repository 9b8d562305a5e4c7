//! The rate limiter's Redis store against real Redis servers: the same decisions as the
//! memory store, one round trip per request, and what each failure policy does while a Redis
//! is down and after it comes back.

mod common;

use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use callnext::backends::Redis;
use callnext::metrics::Metrics;
use callnext::middleware::rate_limit::{OnStoreError, RateLimit, RateLimitBuilder};
use callnext::{Stack, TestClient};
use common::{redis_url, unique, OwnRedis};

fn app() -> Router {
    Router::new().route("/", get(|| async { "hi" }))
}

/// A store timeout no call on a busy machine runs out of (the default, 50 ms, would let a
/// slow first call, which connects and loads the script, through undecided).
const PATIENT: Duration = Duration::from_secs(5);

/// Costs from the `x-cost` header.
fn limiter(prefix: &str) -> RateLimitBuilder {
    RateLimit::builder()
        .limit("5/minute")
        .store_timeout(PATIENT)
        .prefix(prefix)
        .cost(|req: &callnext::Request| {
            req.headers()
                .get("x-cost")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1)
        })
}

fn client(limit: RateLimit) -> TestClient<callnext::StackService> {
    TestClient::new(Stack::new().hook(limit).service(app()))
}

/// `r` and `t` of a `RateLimit` header.
fn reported(res: &callnext::TestResponse) -> (u64, u64) {
    let header = res.header("ratelimit").expect("ratelimit header");
    let field = |name: &str| {
        header
            .split(';')
            .find_map(|p| p.strip_prefix(name))
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("r="), field("t="))
}

#[tokio::test]
async fn memory_and_redis_decide_alike() {
    // One policy (the script's short path), then two decided together.
    let builders: [fn(&str) -> RateLimitBuilder; 2] = [limiter, |p| limiter(p).limit("8/hour")];
    for (n, build) in builders.into_iter().enumerate() {
        let memory = client(build("unused").build().unwrap());
        let redis = Redis::open(&redis_url()).unwrap();
        let shared = client(build(&unique("alike")).redis(redis).build().unwrap());
        // Within these windows a few milliseconds of real time change no decision, no
        // remaining count, and (rounded up to seconds) a reset by at most one.
        for cost in [1u32, 1, 2, 0, 1, 3, 1, 0, 2, 1] {
            let (a, b) = (
                memory
                    .get("/")
                    .header("x-cost", cost.to_string())
                    .send()
                    .await,
                shared
                    .get("/")
                    .header("x-cost", cost.to_string())
                    .send()
                    .await,
            );
            assert_eq!(a.status(), b.status(), "{n} policies, cost {cost}");
            let ((ra, ta), (rb, tb)) = (reported(&a), reported(&b));
            assert_eq!(ra, rb, "{n} policies, cost {cost}");
            assert!(ta.abs_diff(tb) <= 1, "cost {cost}: {ta} vs {tb}");
            assert_eq!(
                a.header("retry-after").is_some(),
                b.header("retry-after").is_some()
            );
            assert_eq!(a.header("ratelimit-policy"), b.header("ratelimit-policy"));
        }
    }
}

#[tokio::test]
async fn one_round_trip_per_request() {
    let own = OwnRedis::start().await;
    let limit = limiter("trips")
        .limit("1000/hour")
        .redis(Redis::open(&own.url()).unwrap())
        .build()
        .unwrap();
    let client = client(limit);
    client.get("/").await; // loads the script (NOSCRIPT, then SCRIPT LOAD)
    own.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..20 {
        client.get("/").await;
    }
    let stats = own.cli(&["INFO", "commandstats"]);
    let calls = |cmd: &str| calls(&stats, cmd);
    // The client sent 20 EVALSHAs; MGET and SET ran inside them (both policies' keys read at
    // once); nothing else was sent (the RESETSTAT itself and the INFO reading this are the
    // only other entries).
    assert_eq!(calls("evalsha"), 20, "{stats}");
    assert_eq!(calls("script"), 0, "{stats}");
    assert_eq!(calls("eval"), 0, "{stats}");
    assert_eq!(calls("mget"), 20, "{stats}");
    assert_eq!(calls("get"), 0, "{stats}");
    // State is the TAT, kept only until the bucket is full again.
    let keys = own.cli(&["--scan", "--pattern", "trips:*"]);
    let key = keys.lines().next().expect("a key");
    let ttl_ms: u64 = own.cli(&["PTTL", key]).trim().parse().unwrap();
    assert!(ttl_ms > 0 && ttl_ms <= 12_000 * 21, "{key}: {ttl_ms}");
}

/// Calls of `cmd` in `INFO commandstats`.
fn calls(stats: &str, cmd: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().parse::<u64>().unwrap()
        })
}

/// Requests that arrive together are checked in one call, each decided as if it had been
/// alone, in the order they came: three callers, two policies, costs of 0 to 3, the same
/// answers as the memory store gives to the same requests one after another.
#[tokio::test]
async fn concurrent_checks_share_a_call_and_decide_as_one_by_one() {
    let own = OwnRedis::start().await;
    let build = |prefix: &str| limiter(prefix).limit("8/hour");
    let memory = client(build("unused").build().unwrap());
    let redis = Redis::open(&own.url()).unwrap();
    let shared = client(build("together").redis(redis).build().unwrap());
    // Loads the script, from a fourth caller.
    shared
        .clone()
        .peer("192.0.2.9:1".parse().unwrap())
        .get("/")
        .await;
    own.cli(&["CONFIG", "RESETSTAT"]);

    let costs = [1u32, 1, 2, 0, 1, 3, 1, 0, 2, 1, 1, 1, 2, 1, 0, 1, 1, 3];
    let send = |client: &TestClient<callnext::StackService>| {
        let requests = costs.iter().enumerate().map(|(i, cost)| {
            let peer = format!("192.0.2.{}:1", i % 3).parse().unwrap();
            let client = client.clone().peer(peer);
            async move {
                let res = client
                    .get("/")
                    .header("x-cost", cost.to_string())
                    .send()
                    .await;
                (res.status().as_u16(), reported(&res).0)
            }
        });
        futures_util::future::join_all(requests)
    };
    let alone = send(&memory).await;
    let together = send(&shared).await;
    assert_eq!(together, alone);
    assert!(alone.iter().any(|(status, _)| *status == 429), "{alone:?}");

    let stats = own.cli(&["INFO", "commandstats"]);
    assert!(calls(&stats, "evalsha") <= 2, "{stats}");
    // One read of every key, one write per key charged.
    assert_eq!(calls(&stats, "mget"), calls(&stats, "evalsha"), "{stats}");
    assert!(
        calls(&stats, "set") <= 2 * 3 * calls(&stats, "evalsha"),
        "{stats}"
    );
}

#[tokio::test]
async fn each_failure_policy_while_redis_is_down_and_recovery() {
    let mut own = OwnRedis::start().await;
    let redis = Redis::open(&own.url()).unwrap();
    let metrics = Metrics::new();
    let build = |name: &str, on: OnStoreError| {
        RateLimit::builder()
            .limit("2/minute")
            .name(name)
            .redis(redis.clone())
            .on_store_error(on)
            // Long enough for a first call on a busy machine; a stopped Redis refuses at once.
            .store_timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    let stack = |limit| Stack::new().name("outage").metrics(&metrics).hook(limit);
    let open = TestClient::new(stack(build("open", OnStoreError::Open)).service(app()));
    let closed = TestClient::new(
        Stack::new()
            .hook(build("closed", OnStoreError::Closed))
            .service(app()),
    );
    let local = TestClient::new(
        Stack::new()
            .hook(build("local", OnStoreError::Local))
            .service(app()),
    );
    // Up: Redis decides.
    assert!(open.get("/").await.header("ratelimit").is_some());
    assert_eq!(closed.get("/").await.status(), 200);

    own.kill();
    for _ in 0..10 {
        let res = open.get("/").await;
        assert_eq!(res.status(), 200, "open lets every request through");
    }
    let started = Instant::now();
    let refused = closed.get("/").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.text(), r#"{"detail":"Service Unavailable"}"#);
    // Refused within one store timeout plus scheduling, never a hang.
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(local.get("/").await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "local keeps limiting");
    let text = metrics.render();
    assert!(
        text.lines()
            .any(|l| l.starts_with("callnext_rate_limit_store_errors_total{")
                && l.contains("action=\"open\"")
                && !l.ends_with(" 0")),
        "{text}"
    );

    own.resume().await;
    let back = Instant::now();
    loop {
        if open.get("/").await.header("ratelimit").is_some() {
            break;
        }
        // The breaker's cooldown, a call that reconnects, and scheduling: seconds at most.
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "Redis not used again within 15 s of its return"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counting only some statuses works the same on Redis, shared by two instances: failures on
/// either count against the one quota, successes never do.
#[tokio::test]
async fn only_counted_statuses_take_quota_across_instances() {
    let prefix = unique("failures");
    let app = || {
        Router::new().route(
            "/",
            get(|headers: http::HeaderMap| async move {
                if headers.contains_key("x-fail") {
                    Err(callnext::HttpError::unauthorized("no"))
                } else {
                    Ok("hi")
                }
            }),
        )
    };
    let instance = || {
        let limit = RateLimit::builder()
            .limit("3/minute")
            .count_statuses([401])
            .prefix(&prefix)
            .store_timeout(PATIENT)
            .redis(Redis::open(&redis_url()).unwrap())
            .build()
            .unwrap();
        // Two instances of one app: one scope for their keys, as two servers share them.
        TestClient::new(Stack::new().hook(limit).service(app())).store_scope(&prefix)
    };
    let (a, b) = (instance(), instance());
    for _ in 0..5 {
        assert_eq!(a.get("/").await.status(), 200);
        assert_eq!(b.get("/").await.status(), 200);
    }
    assert_eq!(a.get("/").header("x-fail", "1").await.status(), 401);
    assert_eq!(b.get("/").header("x-fail", "1").await.status(), 401);
    assert_eq!(a.get("/").header("x-fail", "1").await.status(), 401);
    let refused = b.get("/").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(a.get("/").await.status(), 429);
}

/// A test whose limiter has a fixed prefix, run again at once (a second `cargo test` within
/// the window): each `TestClient` scopes its keys, so the second run starts with a full
/// bucket; clients given one scope share it; `shared_store_keys` leaves the server's keys.
#[tokio::test]
async fn a_test_run_twice_at_once_does_not_see_its_first_runs_counts() {
    let run = || {
        let limit = RateLimit::builder()
            .limit("2/minute")
            .prefix("callnext-test:rerun")
            .store_timeout(PATIENT)
            .redis(Redis::open(&redis_url()).unwrap())
            .build()
            .unwrap();
        Stack::new().hook(limit).service(app())
    };
    for _ in 0..2 {
        let client = TestClient::new(run());
        assert_eq!(client.get("/").await.status(), 200);
        assert_eq!(client.get("/").await.status(), 200);
        assert_eq!(client.get("/").await.status(), 429);
    }

    let scope = unique("rerun-scope");
    let first = TestClient::new(run()).store_scope(&scope);
    assert_eq!(first.get("/").await.status(), 200);
    assert_eq!(first.get("/").await.status(), 200);
    let second = TestClient::new(run()).store_scope(&scope);
    assert_eq!(second.get("/").await.status(), 429);

    // Unscoped: the key a server writes, `<prefix>:{<caller>}:<policy>`.
    let prefix = unique("unscoped");
    let limit = RateLimit::builder()
        .limit("2/minute")
        .prefix(&prefix)
        .store_timeout(PATIENT)
        .redis(Redis::open(&redis_url()).unwrap())
        .build()
        .unwrap();
    let server_like = TestClient::new(Stack::new().hook(limit).service(app())).shared_store_keys();
    assert_eq!(server_like.get("/").await.status(), 200);
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with(&format!("{prefix}:{{127.0.0.1}}:")),
        "{keys:?}"
    );
}

/// Stacks built with one registry (the first one and each configuration reload's) share one
/// client per Redis URL: a reload that keeps the URL keeps the connection.
#[tokio::test]
async fn stacks_built_with_one_registry_share_their_redis_connection() {
    let own = OwnRedis::start().await;
    let registry = callnext::config::Registry::new();
    let text = format!(
        "[middleware.rate_limit]\nstore = \"{}\"\nlimit = \"100/minute\"\n",
        own.url()
    );
    let config = callnext::config::Config::parse(&text, "app.toml", &[]).unwrap();
    // All three alive at once, as an old stack finishing its requests beside a new one.
    let mut alive = Vec::new();
    for _ in 0..3 {
        let stack = config.stack(&registry).unwrap();
        let client = TestClient::new(stack.service(app()));
        assert_eq!(client.get("/").await.status(), 200);
        alive.push(client);
    }
    // The stacks' one connection, and redis-cli's own.
    let clients = own.cli(&["CLIENT", "LIST"]);
    assert_eq!(clients.lines().count(), 2, "{clients}");
}
