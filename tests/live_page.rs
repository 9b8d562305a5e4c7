//! The live stack page through its JSON API and event stream: the figures after known
//! requests, a blocking middleware's event, a rate limiter's 429s, panics and errors, query
//! values hidden, access decided on the client address, the page's headers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use callnext::admin::{Admin, LivePage};
use callnext::middleware::{RateLimit, SetRequestId};
use callnext::{Next, Request, Response, Stack, TestClient, TrustedProxies};
use serde_json::Value;

/// Blocks the runtime thread on `/block`, as a synchronous call in a middleware would.
async fn blocker(req: Request, next: Next<'_>) -> Response {
    if req.uri().path() == "/block" {
        std::thread::sleep(Duration::from_millis(30));
    }
    next.run(req).await
}

fn app(page: &LivePage) -> Router {
    Router::new()
        .route("/", get(|| async { "home" }))
        .route("/items/{id}", get(|| async { "item" }))
        .route("/limited", get(|| async { "ok" }))
        .route("/block", get(|| async { "slow" }))
        .route(
            "/boom",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "never"
            }),
        )
        .merge(Admin::new().live_page(page).router())
}

fn stack(page: &LivePage) -> Stack {
    Stack::new()
        .hook(SetRequestId::new())
        .hook(
            RateLimit::builder()
                .limit("2/minute")
                .paths(["/limited"])
                .build()
                .unwrap(),
        )
        .func(blocker)
        .live(page)
}

async fn snapshot<S>(client: &TestClient<S>) -> Value
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let res = client.get("/_callnext/api/stack").await;
    assert_eq!(res.status(), 200, "{}", res.text());
    res.json()
}

fn entry<'a>(stack: &'a Value, name: &str) -> &'a Value {
    stack["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {stack}"))
}

fn route<'a>(stack: &'a Value, route: &str) -> &'a Value {
    stack["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("no route {route} in {}", stack["routes"]))
}

#[tokio::test]
async fn the_snapshot_counts_known_requests() {
    let page = LivePage::new();
    let stack = stack(&page);
    let client = TestClient::new(stack.service(app(&page)));

    for _ in 0..3 {
        assert_eq!(client.get("/").await.status(), 200);
    }
    for path in ["/items/1", "/items/2", "/items/3"] {
        assert_eq!(client.get(path).await.status(), 200);
    }
    let limited: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(client.get("/limited").await.status().as_u16());
        }
        statuses
    };
    assert_eq!(limited, [200, 200, 429, 429]);
    let blocked = client.get("/block").await;
    let blocked_id = blocked.header("x-request-id").unwrap().to_owned();
    assert_eq!(client.get("/boom").await.status(), 500);
    // 12 requests in all, none of them the page's.

    let doc = snapshot(&client).await;
    assert!(doc["seq"].as_u64().unwrap() >= 1);
    let s = &doc["stacks"][0];
    assert_eq!(s["name"], "main");
    assert_eq!(s["in_flight"], 0);
    assert_eq!(s["requests"], 12, "{s}");
    let names: Vec<&str> = s["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["request_id", "rate_limit", "blocker", "app", "body"]
    );
    let kinds: Vec<&str> = s["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["hook", "hook", "function", "app", "body"]);

    assert_eq!(entry(s, "request_id")["calls"], 12);
    assert_eq!(
        entry(s, "blocker")["calls"],
        10,
        "the limiter's 429s end before it"
    );
    assert_eq!(entry(s, "app")["calls"], 10);
    assert!(entry(s, "request_id")["p50_us"].as_f64().unwrap() > 0.0);
    // The rate limiter answered twice itself, with 429.
    assert_eq!(
        entry(s, "rate_limit")["answered"],
        serde_json::json!([{"status": 429, "count": 2}])
    );
    assert_eq!(entry(s, "request_id")["answered"], serde_json::json!([]));
    // The handler's panic: the app's error and panic.
    assert_eq!(entry(s, "app")["panics"], 1);
    assert_eq!(entry(s, "app")["errors"], 1);
    assert_eq!(entry(s, "blocker")["panics"], 0);
    // The blocking middleware: counted, and an event with its route and request id.
    assert!(entry(s, "blocker")["blocking"].as_u64().unwrap() >= 1);
    let events = s["blocking_events"].as_array().unwrap();
    let event = events
        .iter()
        .find(|e| e["entry"] == "blocker")
        .unwrap_or_else(|| panic!("no blocking event of blocker: {events:?}"));
    assert_eq!(event["route"], "/block");
    assert_eq!(event["method"], "GET");
    assert_eq!(event["request_id"], blocked_id.as_str());
    assert!(event["duration_ms"].as_f64().unwrap() >= 25.0, "{event}");

    assert_eq!(route(s, "/")["requests"], 3);
    assert_eq!(route(s, "/items/{id}")["requests"], 3);
    assert_eq!(route(s, "/limited")["status"]["2xx"], 2);
    // Answered before the router ran, or by a handler that panicked: no route template is
    // known for them (as in the metrics).
    assert_eq!(route(s, "unmatched")["status"]["4xx"], 2);
    assert_eq!(route(s, "unmatched")["status"]["5xx"], 1);
    assert!(
        s["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["route"].as_str().unwrap().starts_with("/_callnext")),
        "the page's own requests are not counted"
    );
    assert_eq!(s["status"]["2xx"], 9);
}

#[tokio::test]
async fn the_slowest_requests_keep_their_waterfall() {
    let page = LivePage::new();
    let client = TestClient::new(stack(&page).service(app(&page)));
    client.get("/").await;
    let blocked = client.get("/block").await;
    let blocked_id = blocked.header("x-request-id").unwrap().to_owned();
    client.get("/").await;

    let requests: Value = client.get("/_callnext/api/requests").await.json();
    let slowest = requests["stacks"][0]["slowest"].as_array().unwrap();
    let block = slowest
        .iter()
        .find(|r| r["route"] == "/block")
        .unwrap_or_else(|| panic!("the 30 ms request is the slowest of its second: {slowest:?}"));
    let steps: Vec<&str> = block["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["entry"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["request_id", "rate_limit", "blocker", "app"]);
    assert_eq!(block["request_id"], blocked_id.as_str());
    let blocker_step = &block["steps"][2];
    assert!(blocker_step["exclusive_ms"].as_f64().unwrap() >= 25.0);
}

#[tokio::test]
async fn an_entry_that_answers_after_calling_the_rest_is_the_one_counted() {
    let page = LivePage::new();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .merge(Admin::new().live_page(&page).router());
    let stack = Stack::new()
        .middleware(callnext::middleware::Timeout::new(Duration::from_millis(
            50,
        )))
        .live(&page);
    let client = TestClient::new(stack.service(app));
    let status = client.get("/slow").await.status().as_u16();
    assert!(status >= 500, "{status}");
    let doc = snapshot(&client).await;
    let s = &doc["stacks"][0];
    assert_eq!(
        entry(s, "timeout")["answered"],
        serde_json::json!([{"status": status, "count": 1}])
    );
    assert_eq!(entry(s, "timeout")["errors"], 1);
    assert_eq!(entry(s, "app")["errors"], 0, "the app never answered");
}

#[tokio::test]
async fn query_values_are_hidden_unless_asked() {
    for (show, expected) in [
        (false, "/items/7?token=&page=&*"),
        (true, "/items/7?token=abc&page=2&eyJhbGciOi"),
    ] {
        let page = LivePage::builder().show_query_values(show).build().unwrap();
        let client = TestClient::new(Stack::new().live(&page).service(app(&page)));
        client.get("/items/7?token=abc&page=2&eyJhbGciOi").await;
        let requests: Value = client.get("/_callnext/api/requests").await.json();
        assert_eq!(requests["stacks"][0]["slowest"][0]["path"], expected);
    }
}

#[tokio::test]
async fn the_event_stream_sends_snapshots_and_resumes_after_the_last_seen() {
    let page = LivePage::new();
    let client = TestClient::new(stack(&page).service(app(&page)));
    let mut stream = client.get("/_callnext/api/events").stream().await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-store"));

    let first = next_snapshot(&mut stream).await;
    // A blocking request made while the stream is open shows up in a later snapshot.
    client.get("/block").await;
    let mut seen = first.0;
    let mut found = false;
    for _ in 0..10 {
        let (id, doc) = next_snapshot(&mut stream).await;
        assert!(id > seen, "ids increase: {id} after {seen}");
        seen = id;
        let events = doc["stacks"][0]["blocking_events"].as_array().unwrap();
        if events
            .iter()
            .any(|e| e["entry"] == "blocker" && e["route"] == "/block")
        {
            found = true;
            break;
        }
    }
    assert!(found, "the blocking event reached the stream");

    // A viewer reconnecting with the id it saw last gets only newer snapshots.
    let mut resumed = client
        .get("/_callnext/api/events")
        .header("last-event-id", seen.to_string())
        .stream()
        .await;
    let (id, _) = next_snapshot(&mut resumed).await;
    assert!(id > seen, "resumed at {id}, after {seen}");
    // An id from before a restart (ahead of this process's numbers) does not hold it back.
    let mut after_restart = client
        .get("/_callnext/api/events")
        .header("last-event-id", "1000000")
        .stream()
        .await;
    let (id, _) = next_snapshot(&mut after_restart).await;
    assert!(id < 1_000_000);
}

#[tokio::test]
async fn a_viewer_that_stops_reading_misses_snapshots_and_holds_up_nothing() {
    let page = LivePage::new();
    let client = TestClient::new(stack(&page).service(app(&page)));
    // The stream's ticks fall a whole number of seconds after it started, which is after this.
    let opened = std::time::Instant::now();
    let mut stuck = client.get("/_callnext/api/events").stream().await;
    let (first, _) = next_snapshot(&mut stuck).await;
    // The viewer reads nothing for two and a half ticks; requests go on.
    let until = opened + Duration::from_millis(2500);
    let mut served = 0;
    while std::time::Instant::now() < until {
        assert_eq!(client.get("/").await.status(), 200);
        served += 1;
        tokio::task::yield_now().await;
    }
    assert!(served > 0);
    // When it reads again it gets one current snapshot, not the backlog of the ones it
    // missed; the next comes at the next tick, the third after the first, not at once (a
    // lower bound: a busy machine only makes it later).
    let (second, doc) = next_snapshot(&mut stuck).await;
    assert!(second > first);
    assert_eq!(
        doc["stacks"][0]["routes"][0]["requests"], served,
        "it is current"
    );
    let (third, _) = next_snapshot(&mut stuck).await;
    assert_eq!(third, second + 1);
    assert!(
        opened.elapsed() >= Duration::from_secs(3),
        "the missed ticks were skipped, not queued"
    );
}

/// The next snapshot event on the stream: its id and document.
async fn next_snapshot(stream: &mut callnext::TestStream) -> (u64, Value) {
    let mut text = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next_chunk())
            .await
            .expect("a snapshot within 30 s")
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if event.starts_with(':') {
                continue; // a heartbeat
            }
            let mut id = None;
            let mut data = None;
            let mut kind = None;
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = Some(v.to_owned());
                }
            }
            assert_eq!(kind.as_deref(), Some("snapshot"), "{event}");
            return (id.expect("an id"), data.expect("data"));
        }
    }
}

#[tokio::test]
async fn access_is_decided_on_the_client_address_or_the_token() {
    let proxies = TrustedProxies::parse(["127.0.0.1/32"]).unwrap();
    let behind_proxy = |client: &TestClient<callnext::StackService>, path: &str| {
        client.get(path).header("x-forwarded-for", "203.0.113.5")
    };

    // No token: loopback clients only.
    let page = LivePage::new();
    let client = TestClient::new(
        Stack::new()
            .trusted_proxies(proxies.clone())
            .live(&page)
            .service(app(&page)),
    );
    assert_eq!(client.get("/_callnext/").await.status(), 200);
    assert_eq!(client.get("/_callnext/api/stack").await.status(), 200);
    for path in [
        "/_callnext/",
        "/_callnext/api/stack",
        "/_callnext/api/events",
    ] {
        let res = behind_proxy(&client, path).await;
        assert_eq!(res.status(), 404, "{path} to 203.0.113.5");
        assert_eq!(res.header("cache-control"), Some("no-store"));
    }
    // Loopback, but asked for by another site's name (DNS rebinding) or by another site's
    // page: refused.
    let res = client
        .get("/_callnext/api/stack")
        .header("host", "rebound.example:8000")
        .await;
    assert_eq!(res.status(), 404);
    let res = client
        .get("/_callnext/api/stack")
        .header("sec-fetch-site", "cross-site")
        .await;
    assert_eq!(res.status(), 404);
    let res = client
        .get("/_callnext/api/stack")
        .header("host", "localhost:8000")
        .header("sec-fetch-site", "same-origin")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.header("cross-origin-resource-policy"),
        Some("same-origin")
    );
    // A client that is not loopback at all.
    let remote = TestClient::new(Stack::new().live(&page).service(app(&page)))
        .peer(SocketAddr::from(([192, 0, 2, 7], 40000)));
    assert_eq!(remote.get("/_callnext/api/stack").await.status(), 404);

    // With a token: whoever bears it, and no one else (loopback included).
    let token = "an-admin-token-of-some-length";
    let page = LivePage::builder().token(token).build().unwrap();
    let client = TestClient::new(
        Stack::new()
            .trusted_proxies(proxies)
            .live(&page)
            .service(app(&page)),
    );
    assert_eq!(behind_proxy(&client, "/_callnext/").await.status(), 403);
    assert_eq!(client.get("/_callnext/api/stack").await.status(), 403);
    let res = behind_proxy(&client, "/_callnext/")
        .bearer("not-the-token-at-all-no")
        .await;
    assert_eq!(res.status(), 403);
    let res = behind_proxy(&client, "/_callnext/").bearer(token).await;
    assert_eq!(res.status(), 200);
    let res = behind_proxy(&client, "/_callnext/api/stack")
        .bearer(token)
        .await;
    assert_eq!(res.status(), 200);
    // A browser is asked for it (Basic, the token as password) and may send it so.
    let res = behind_proxy(&client, "/_callnext/")
        .header("accept", "text/html,application/xhtml+xml")
        .await;
    assert_eq!(res.status(), 401);
    assert!(res
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic "));
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("me:{token}")
        )
    );
    let res = behind_proxy(&client, "/_callnext/")
        .header("authorization", basic.as_str())
        .await;
    assert_eq!(res.status(), 200);

    // An own listener: anyone (modelled by `open`).
    let page = LivePage::builder().open(true).build().unwrap();
    let remote = TestClient::new(Stack::new().live(&page).service(app(&page)))
        .peer(SocketAddr::from(([192, 0, 2, 7], 40000)));
    assert_eq!(remote.get("/_callnext/api/stack").await.status(), 200);
}

#[tokio::test]
async fn the_page_is_self_contained_with_a_strict_policy() {
    let page = LivePage::new();
    let client = TestClient::new(stack(&page).service(app(&page)));
    let res = client.get("/_callnext/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(res.header("x-frame-options"), Some("DENY"));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(res.header("set-cookie").is_none());
    let csp = res.header("content-security-policy").unwrap().to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_owned();
    assert!(nonce.len() >= 32, "{csp}");
    assert!(csp.contains("default-src 'none'"));
    assert!(csp.contains("frame-ancestors 'none'"));
    let html = res.text();
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(html.contains(&format!("<style nonce=\"{nonce}\">")));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );
    assert!(!html.contains("{{"), "every placeholder filled");
    // A new nonce per load.
    let again = client.get("/_callnext/").await;
    assert_ne!(again.header("content-security-policy").unwrap(), csp);
    // The JSON API keeps out of caches too.
    let api = client.get("/_callnext/api/stack").await;
    assert_eq!(api.header("cache-control"), Some("no-store"));
    assert_eq!(api.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_stack_built_into_several_services_is_one_stack_on_the_page() {
    let page = LivePage::new();
    let stack = stack(&page);
    let a = TestClient::new(stack.service(app(&page)));
    let b = TestClient::new(stack.service(app(&page)));
    a.get("/").await;
    b.get("/").await;
    let doc = snapshot(&a).await;
    assert_eq!(doc["stacks"].as_array().unwrap().len(), 1);
    assert_eq!(doc["stacks"][0]["requests"], 2);
}

#[cfg(feature = "config")]
#[test]
fn the_admin_table_turns_the_page_on() {
    use callnext::config::Config;
    let config = Config::parse(
        "[admin]\npage = true\ntoken = \"short\"\n",
        "callnext.toml",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        config.to_string(),
        "callnext.toml:3: `admin.token`: invalid `token`: must be at least 16 characters, got 5"
    );
    let config = Config::parse(
        "[admin]\npage = true\npage_path = \"/ops/live\"\n",
        "callnext.toml",
        &[],
    )
    .unwrap();
    assert_eq!(config.live_page().unwrap().unwrap().path(), "/ops/live");
    let off = Config::parse("[admin]\n", "callnext.toml", &[]).unwrap();
    assert!(off.live_page().unwrap().is_none());
}

/// Polls the JSON API until `ready` accepts a snapshot (the page probes stores in the
/// background, at most every 5 s, once someone looks).
async fn snapshot_when<S>(client: &TestClient<S>, ready: impl Fn(&Value) -> bool) -> Value
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    for _ in 0..300 {
        let doc = snapshot(client).await;
        if ready(&doc["stacks"][0]) {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the snapshot never got there: {}", snapshot(client).await);
}

#[cfg(all(feature = "config", feature = "redis", feature = "sql"))]
#[tokio::test]
async fn stores_settings_and_order_warnings_from_the_configuration_file() {
    let dir = std::env::temp_dir().join(common::unique("live-page-stores"));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite://{}", dir.join("sessions.db").display());
    let secret = "s".repeat(64);
    let text = format!(
        "[stack]\norder = [\"cors\", \"request_id\", \"rate_limit\", \"session\"]\n\
         [middleware.cors]\nallow_origins = [\"https://app.example\"]\n\
         [middleware.request_id]\n\
         [middleware.rate_limit]\nstore = \"{redis}\"\nlimit = \"1000/minute\"\nprefix = \"{prefix}\"\n\
         [middleware.session]\nstore = \"{sqlite}\"\nsecret = \"{secret}\"\n",
        redis = common::redis_url(),
        prefix = common::unique("live"),
    );
    let page = LivePage::new();
    let stack = common::stack_from_config(&text).unwrap().live(&page);
    let client = TestClient::new(stack.service(app(&page)));
    assert_eq!(client.get("/").await.status(), 200);

    let doc = snapshot_when(&client, |s| {
        s["backends"]
            .as_array()
            .is_some_and(|b| b.len() == 2 && b.iter().all(|b| b["up"] == true))
    })
    .await;
    let s = &doc["stacks"][0];
    let backends = s["backends"].as_array().unwrap();
    assert_eq!(backends[0]["kind"], "redis");
    assert_eq!(backends[0]["used_by"], "rate_limit");
    assert_eq!(backends[0]["counters"]["store_errors_open"], 0);
    assert!(backends[0]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(backends[1]["kind"], "sqlite");
    assert_eq!(backends[1]["used_by"], "session");
    assert_eq!(backends[1]["counters"]["store_errors_load"], 0);
    // Settings as the file gave them, the secret hidden.
    let settings = entry(s, "session")["settings"].to_string();
    assert!(settings.contains("<redacted>"), "{settings}");
    assert!(!settings.contains(&secret), "{settings}");
    assert!(entry(s, "rate_limit")["settings"]
        .to_string()
        .contains("limit=\\\"1000/minute\\\""));
    // The order linter's warning: the request id should come first.
    let lint = s["lint"].as_array().unwrap();
    assert!(
        lint.iter()
            .any(|w| w.as_str().unwrap().contains("put the request id first")),
        "{lint:?}"
    );

    // A Redis that is not there: down, with the error, and the limiter's policy counted.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let text = format!(
        "[middleware.rate_limit]\nstore = \"redis://127.0.0.1:{port}\"\nlimit = \"10/minute\"\n"
    );
    let page = LivePage::new();
    let stack = common::stack_from_config(&text).unwrap().live(&page);
    let client = TestClient::new(stack.service(app(&page)));
    assert_eq!(client.get("/").await.status(), 200, "fails open by default");
    let doc = snapshot_when(&client, |s| s["backends"][0]["up"] == false).await;
    let backend = &doc["stacks"][0]["backends"][0];
    assert!(!backend["error"].as_str().unwrap().is_empty());
    // The request, and the page's own (they go through the stack, uncounted by the page).
    assert!(backend["counters"]["store_errors_open"].as_u64().unwrap() >= 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_page_can_live_elsewhere() {
    let page = LivePage::builder().path("/ops/live/").build().unwrap();
    assert_eq!(page.path(), "/ops/live");
    let client = TestClient::new(Stack::new().live(&page).service(app(&page)));
    assert_eq!(client.get("/ops/live/").await.status(), 200);
    assert_eq!(client.get("/ops/live/api/stack").await.status(), 200);
    // Not the page any more: an ordinary request to a path the app does not have.
    assert_eq!(client.get("/_callnext/").await.status(), 404);
    client.get("/").await;
    let doc: Value = client.get("/ops/live/api/stack").await.json();
    assert_eq!(doc["stacks"][0]["requests"], 2, "{doc}");
    assert_eq!(route(&doc["stacks"][0], "unmatched")["status"]["4xx"], 1);
}

/// Sends `request` (raw HTTP/1.1) to `addr`; the status code of the answer.
async fn raw_status(addr: SocketAddr, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "no answer to {request:?}");
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Loopback mode decides on the effective authority: HTTP/2's `:authority`, an absolute-form
/// target and a `Host` with userinfo all name another host; a request with forwarding headers
/// no trusted proxy resolved came through a proxy on this machine.
#[tokio::test]
async fn loopback_mode_decides_on_the_effective_authority() {
    let page = LivePage::new();
    let running = common::spawn(
        callnext::serve::Server::new(),
        Stack::new().live(&page).service(app(&page)),
    )
    .await;
    let addr = running.addr;
    let get = |host: &str, target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
    };
    let path = "/_callnext/api/stack";
    assert_eq!(raw_status(addr, &get("127.0.0.1", path, "")).await, 200);
    assert_eq!(
        raw_status(
            addr,
            &get("127.0.0.1", "http://evil.example/_callnext/api/stack", "")
        )
        .await,
        404
    );
    assert_eq!(
        raw_status(addr, &get("127.0.0.1:80@evil.example", path, "")).await,
        404
    );
    for forwarded in [
        "X-Forwarded-For: 203.0.113.9\r\n",
        "Forwarded: for=203.0.113.9\r\n",
    ] {
        assert_eq!(
            raw_status(addr, &get("127.0.0.1", path, forwarded)).await,
            404,
            "{forwarded}"
        );
    }

    // HTTP/2 (cleartext, prior knowledge): the `:authority` is the host asked for.
    let mut sender = common::http2(addr).await;
    for (authority, expected) in [("127.0.0.1", 200), ("evil.example", 404)] {
        let req = http::Request::get(format!("http://{authority}{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), expected, "{authority}");
    }
    running.stop().await;
}
