//! The rate limiter in memory: headers, refusals, refills on a paused clock, preflights and
//! path scopes, shadow mode, metrics, a forged `X-Forwarded-For` over real sockets, its 429
//! with the request id and CORS headers, and the configuration file.

mod common;

use std::time::Duration;

use axum::{routing::get, Router};
use callnext::metrics::Metrics;
use callnext::middleware::rate_limit::{Headers, KeyBy, RateLimit};
use callnext::serve::Server;
use callnext::{Stack, TestClient, TrustedProxies};
use common::stack_from_config;

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hi" }))
        .route("/api/items", get(|| async { "items" }))
        .route("/other", get(|| async { "other" }))
}

fn client(limit: RateLimit) -> TestClient<callnext::StackService> {
    TestClient::new(Stack::new().hook(limit).service(app()))
}

#[tokio::test(start_paused = true)]
async fn refusals_and_refills_follow_the_rate() {
    let client = client(RateLimit::builder().limit("3/minute").build().unwrap());
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let res = client.get("/").await;
        assert_eq!(res.status(), 200);
        remaining.push(res.header("ratelimit").unwrap().to_owned());
    }
    assert_eq!(
        remaining,
        [
            "\"3-in-1m\";r=2;t=20",
            "\"3-in-1m\";r=1;t=40",
            "\"3-in-1m\";r=0;t=60"
        ]
    );
    let refused = client.get("/").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.text(), r#"{"detail":"Too Many Requests"}"#);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert_eq!(refused.header("retry-after"), Some("20"));
    assert_eq!(refused.header("ratelimit"), Some("\"3-in-1m\";r=0;t=20"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"3-in-1m\";q=3;w=60")
    );
    // A refusal takes nothing: one interval later exactly one more passes.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(client.get("/").await.status(), 200);
    assert_eq!(client.get("/").await.status(), 429);
    // Retry-After rounds up and is at least 1.
    tokio::time::advance(Duration::from_millis(19_500)).await;
    assert_eq!(client.get("/").await.header("retry-after"), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn the_policy_with_the_lowest_remaining_is_reported() {
    let client = client(
        RateLimit::builder()
            .limit("10/second")
            .limit("3/hour")
            .policy_name("hourly")
            .build()
            .unwrap(),
    );
    let res = client.get("/").await;
    assert_eq!(res.header("ratelimit"), Some("\"hourly\";r=2;t=1200"));
    assert_eq!(
        res.header("ratelimit-policy"),
        Some("\"10-in-1s\";q=10;w=1, \"hourly\";q=3;w=3600")
    );
    client.get("/").await;
    client.get("/").await;
    let refused = client.get("/").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.header("retry-after"), Some("1200"));
}

#[tokio::test]
async fn header_modes() {
    let legacy = client(
        RateLimit::builder()
            .limit("5/minute")
            .headers(Headers::Legacy)
            .build()
            .unwrap(),
    );
    let res = legacy.get("/").await;
    assert_eq!(res.header("ratelimit-limit"), Some("5"));
    assert_eq!(res.header("ratelimit-remaining"), Some("4"));
    assert_eq!(res.header("ratelimit-reset"), Some("12"));
    assert_eq!(res.header("ratelimit-policy"), Some("5;w=60"));
    assert_eq!(res.header("ratelimit"), None);

    let x = client(
        RateLimit::builder()
            .limit("5/minute")
            .headers(Headers::X)
            .build()
            .unwrap(),
    );
    let res = x.get("/").await;
    assert_eq!(res.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(res.header("x-ratelimit-remaining"), Some("4"));
    assert_eq!(res.header("ratelimit-policy"), None);

    let none = client(
        RateLimit::builder()
            .limit("1/minute")
            .headers(Headers::None)
            .build()
            .unwrap(),
    );
    let res = none.get("/").await;
    assert!(res
        .headers()
        .keys()
        .all(|k| !k.as_str().contains("ratelimit")));
    let refused = none.get("/").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.header("retry-after"), Some("60"));
}

#[tokio::test]
async fn preflights_and_other_paths_are_not_counted() {
    let client = client(
        RateLimit::builder()
            .limit("1/minute")
            .paths(["/api/"])
            .build()
            .unwrap(),
    );
    for _ in 0..3 {
        let preflight = client
            .options("/api/items")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "GET")
            .send()
            .await;
        assert_ne!(preflight.status(), 429);
        assert_eq!(client.get("/other").await.status(), 200);
    }
    assert_eq!(client.get("/api/items").await.status(), 200);
    assert_eq!(client.get("/api/items").await.status(), 429);
    assert_eq!(client.get("/").await.status(), 200);
}

#[tokio::test]
async fn keys_from_a_header_or_an_earlier_middleware() {
    let by_header = client(
        RateLimit::builder()
            .limit("1/minute")
            .key(KeyBy::Header(http::HeaderName::from_static("x-tenant")))
            .build()
            .unwrap(),
    );
    let tenant = |t: &'static str| by_header.get("/").header("x-tenant", t).send();
    assert_eq!(tenant("a").await.status(), 200);
    assert_eq!(tenant("b").await.status(), 200);
    assert_eq!(tenant("a").await.status(), 429);

    let stack = Stack::new()
        .on_request("auth", |req: &mut callnext::Request| {
            let user = req
                .headers()
                .get("x-user")
                .map(|v| v.to_str().unwrap().to_owned());
            if let Some(user) = user {
                req.extensions_mut().insert(callnext::UserId::new(user));
            }
        })
        .hook(
            RateLimit::builder()
                .limit("1/minute")
                .key(KeyBy::User)
                .build()
                .unwrap(),
        );
    let by_user = TestClient::new(stack.service(app()));
    let user = |u: &'static str| by_user.get("/").header("x-user", u).send();
    assert_eq!(user("ann").await.status(), 200);
    assert_eq!(user("bob").await.status(), 200);
    assert_eq!(user("ann").await.status(), 429);
}

#[tokio::test]
async fn shadow_mode_decides_and_records_but_never_refuses() {
    let metrics = Metrics::new();
    let stack = Stack::new().metrics(&metrics).hook(
        RateLimit::builder()
            .limit("1/minute")
            .shadow(true)
            .build()
            .unwrap(),
    );
    let client = TestClient::new(stack.service(app()));
    for _ in 0..3 {
        let res = client.get("/").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.header("ratelimit"), None);
    }
    let text = metrics.render();
    let series = |decision: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("callnext_rate_limit_requests_total{")
                    && l.contains(&format!("decision=\"{decision}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(series("allowed").as_deref(), Some("1"), "{text}");
    assert_eq!(series("shadow_limited").as_deref(), Some("2"), "{text}");
    assert_eq!(series("limited").as_deref(), Some("0"), "{text}");
}

#[tokio::test]
async fn a_forged_forwarded_for_is_still_one_client() {
    let stack = Stack::new().hook(RateLimit::builder().limit("3/minute").build().unwrap());
    let server = common::spawn(Server::new(), stack.service(app())).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let req = http::Request::get(server.url("/"))
            .header("x-forwarded-for", format!("203.0.113.{i}, 198.51.100.{i}"))
            .header("forwarded", format!("for=192.0.2.{i}"))
            .body(http_body_util::Empty::new())
            .unwrap();
        statuses.push(client.request(req).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    server.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_bucket() {
    let stack = Stack::new()
        .trusted_proxies(TrustedProxies::parse(["127.0.0.1/32"]).unwrap())
        .hook(RateLimit::builder().limit("1/minute").build().unwrap());
    let server = common::spawn(Server::new(), stack.service(app())).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let get = |ip: &str| {
        let req = http::Request::get(server.url("/"))
            .header("x-forwarded-for", ip)
            .body(http_body_util::Empty::new())
            .unwrap();
        client.request(req)
    };
    assert_eq!(get("203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(get("203.0.113.2").await.unwrap().status(), 200);
    assert_eq!(get("203.0.113.1").await.unwrap().status(), 429);
    // One IPv6 host's /64 is one client.
    assert_eq!(get("2001:db8::1").await.unwrap().status(), 200);
    assert_eq!(get("2001:db8::2").await.unwrap().status(), 429);
    assert_eq!(get("2001:db8:0:1::1").await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_429_carries_the_request_id_and_cors_headers() {
    let stack = stack_from_config(
        r#"
[middleware.request_id]
[middleware.cors]
allow_origins = ["https://app.example"]
[middleware.rate_limit]
limit = "1/minute"
"#,
    )
    .unwrap();
    let client = TestClient::new(stack.service(app()));
    let from_app = || {
        client
            .get("/")
            .header("origin", "https://app.example")
            .send()
    };
    assert_eq!(from_app().await.status(), 200);
    let refused = from_app().await;
    assert_eq!(refused.status(), 429);
    let id = refused
        .header("x-request-id")
        .expect("request id")
        .to_owned();
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let exposed = refused.header("access-control-expose-headers").unwrap();
    for name in [
        "x-request-id",
        "ratelimit",
        "ratelimit-policy",
        "retry-after",
    ] {
        assert!(exposed.split(", ").any(|e| e == name), "{exposed}");
    }
    let body: serde_json::Value = serde_json::from_str(&refused.text()).unwrap();
    assert_eq!(body["detail"], "Too Many Requests");
    assert_eq!(body["request_id"], id.as_str());
    // The preflight is answered by CORS, before the limiter.
    let preflight = client
        .options("/")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await;
    assert_eq!(preflight.status(), 200);
}

#[tokio::test]
async fn from_the_configuration_file() {
    let stack = stack_from_config(
        "[middleware.rate_limit]\nlimit = [\"2/s\", \"3/hour\"]\nburst = [1, 3]\nheaders = \"x\"\n",
    )
    .unwrap();
    let client = TestClient::new(stack.service(app()));
    let res = client.get("/").await;
    assert_eq!(res.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(res.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(client.get("/").await.status(), 429);

    let mistakes = [
        (
            "[middleware.rate_limit]\nlimit = \"100/fortnight\"\n",
            "app.toml:2: `middleware.rate_limit.limit`: invalid `limit`: expected a count and a window such as \"100/minute\", \"10/s\" or \"5/30s\", got `100/fortnight`",
        ),
        (
            "[middleware.rate_limit]\nlimit = [\"1/s\", \"2/h\"]\nburst = 5\n",
            "app.toml:3: `middleware.rate_limit.burst`: with several limits, give `burst` as a list, one per limit",
        ),
        (
            "[middleware.rate_limit]\nburst = 0\n",
            "app.toml:2: `middleware.rate_limit.burst`: invalid `burst`: must be at least 1",
        ),
        (
            "[middleware.rate_limit]\nkey = \"cookie\"\n",
            "app.toml:2: `middleware.rate_limit.key`: expected `ip`, `api_key`, `user` or `header:<name>`, got `cookie`",
        ),
        (
            "[middleware.rate_limit]\non_store_error = \"retry\"\n",
            "app.toml:2: `middleware.rate_limit.on_store_error`: expected `open`, `closed` or `local`, got `retry`",
        ),
        (
            "[middleware.rate_limit]\nheaders = \"draft-6\"\n",
            "app.toml:2: `middleware.rate_limit.headers`: expected `draft`, `legacy`, `x` or `none`, got `draft-6`",
        ),
        (
            "[middleware.rate_limit]\nstore = \"memcached://x\"\n",
            "app.toml:2: `middleware.rate_limit.store`: expected `memory` or a `redis://` URL, got `memcached://x`",
        ),
        (
            "[middleware.rate_limit]\nlimit = \"5/minute\"\ncost = 6\n",
            "app.toml:3: `middleware.rate_limit.cost`: invalid `cost`: 6 is more than the burst of `5-in-1m` (5): no request could pass",
        ),
        (
            "[middleware.rate_limit]\nipv6_prefix = 129\n",
            "app.toml:2: `middleware.rate_limit.ipv6_prefix`: invalid `ipv6_prefix`: at most 128 bits, got 129",
        ),
        (
            "[middleware.rate_limit]\nlimits = \"1/s\"\n",
            "app.toml:2: `middleware.rate_limit.limits`: unknown field `limits`, expected one of `store`, `limit`, `burst`, `key`, `paths`, `on_store_error`, `headers`, `shadow`, `cost`, `count_preflights`, `count_statuses`, `ipv6_prefix`, `max_keys`, `store_timeout`, `prefix`",
        ),
    ];
    for (text, expected) in mistakes {
        assert_eq!(stack_from_config(text).unwrap_err(), expected, "{text}");
    }
}
