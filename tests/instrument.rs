//! Exclusive poll time, the blocking detector, Server-Timing and request spans.

mod common;

use std::time::Duration;

use axum::{routing::get, Router};
use callnext::extract::Path;
use callnext::instrument::RequestTimings;
use callnext::seed::{self, SeedConfig};
use callnext::{Entry, Middleware, Next, Request, Response, Stack, TestClient};

const MS: Duration = Duration::from_millis(1);

/// Blocks 20 ms before calling next.
async fn a(req: Request, next: Next<'_>) -> Response {
    std::thread::sleep(20 * MS);
    next.run(req).await
}

/// Awaits a 50 ms async sleep: waiting, not blocking.
async fn b(req: Request, next: Next<'_>) -> Response {
    tokio::time::sleep(50 * MS).await;
    next.run(req).await
}

/// Blocks 5 ms after next returns.
async fn c(req: Request, next: Next<'_>) -> Response {
    let res = next.run(req).await;
    std::thread::sleep(5 * MS);
    res
}

fn nested_app() -> Router {
    Router::new().route(
        "/items/{item_id}",
        get(|Path(id): Path<u32>| async move {
            std::thread::sleep(2 * MS);
            id.to_string()
        }),
    )
}

fn within(d: Duration, lo_ms: f64, hi_ms: f64) -> bool {
    let ms = d.as_secs_f64() * 1000.0;
    (lo_ms..=hi_ms).contains(&ms)
}

#[tokio::test]
async fn exclusive_time_nests_exactly() {
    let stack = Stack::new().func(a).func(b).func(c).record_timings(true);
    let res = TestClient::new(stack.service(nested_app()))
        .get("/items/7")
        .await;
    assert_eq!(res.text(), "7");
    let timings = res.extensions().get::<RequestTimings>().unwrap();
    let names: Vec<_> = timings.boundaries.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "app"]);
    let excl = |name| timings.get(name).unwrap().exclusive;
    // Each boundary is charged its own blocking only; sleep overshoot on a loaded machine is
    // the slack above the lower bounds.
    assert!(within(excl("a"), 20.0, 30.0), "a: {:?}", excl("a"));
    assert!(within(excl("b"), 0.0, 1.5), "b: {:?}", excl("b"));
    assert!(within(excl("c"), 5.0, 12.0), "c: {:?}", excl("c"));
    assert!(within(excl("app"), 2.0, 8.0), "app: {:?}", excl("app"));
    // Wall time excluding inner layers shows what each waited for, async included.
    let wall = |name| timings.get(name).unwrap().wall_excluding_inner;
    assert!(within(wall("b"), 50.0, 80.0), "b wall: {:?}", wall("b"));
    assert!(within(wall("a"), 20.0, 30.0), "a wall: {:?}", wall("a"));
}

#[tokio::test]
async fn blocking_middleware_is_caught_and_named() {
    let logs = common::Logs::capture();
    struct Slow;
    impl Middleware for Slow {
        async fn call(&self, req: Request, next: Next<'_>) -> Response {
            std::thread::sleep(20 * MS);
            next.run(req).await
        }
    }
    async fn fine(req: Request, next: Next<'_>) -> Response {
        next.run(req).await
    }
    let stack = Stack::new()
        .func(fine)
        .push(Entry::middleware(Slow).named("slow_auth"));
    let client = TestClient::new(stack.service(nested_app()));
    for _ in 0..3 {
        let req = http::Request::get("/items/5")
            .header("x-request-id", "req-42")
            .body(Default::default())
            .unwrap();
        assert_eq!(client.request(req).await.status(), 200);
    }

    let report = stack.blocking_report();
    assert!(!report.is_clean());
    let slow = report.get("slow_auth").expect("slow_auth reported");
    assert_eq!(slow.events, 3);
    assert!(slow.worst >= 20 * MS, "{:?}", slow.worst);
    assert_eq!(slow.last_route, "/items/{item_id}");
    assert_eq!(slow.last_method, "GET");
    assert!(report.get("fine").is_none());
    assert!(
        report.get("app").is_none(),
        "2 ms in the app is under the threshold"
    );

    let failure = std::panic::catch_unwind(|| report.assert_clean()).unwrap_err();
    let message = failure.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("middleware `slow_auth`: 3 blocking poll(s)"),
        "{message}"
    );
    assert!(message.contains("GET /items/{item_id}"), "{message}");

    // One warning for three events: the rest are rate-limited.
    let logs = logs.text();
    let warnings: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("blocked the runtime") && l.contains("slow_auth"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    let w = warnings[0];
    for part in [
        "WARN",
        "middleware=\"slow_auth\"",
        "route=\"/items/{item_id}\"",
        "method=\"GET\"",
        "duration_ms=",
    ] {
        assert!(w.contains(part), "{part} missing in {w}");
    }
    // The warning is logged inside the request's span, with its fields.
    assert!(w.contains("request{method=GET"), "{w}");
    assert!(
        w.contains("request_id=\"req-42\"") || w.contains("request_id=req-42"),
        "{w}"
    );
    assert!(w.contains("status=200"), "{w}");
}

#[tokio::test]
async fn threshold_is_configurable_and_instrumentation_can_be_off() {
    async fn blocks_3ms(req: Request, next: Next<'_>) -> Response {
        std::thread::sleep(3 * MS);
        next.run(req).await
    }
    let app = Router::new().route("/", get(|| async { "ok" }));
    let strict = Stack::new().func(blocks_3ms).blocking_threshold(MS);
    TestClient::new(strict.service(app.clone())).get("/").await;
    assert_eq!(
        strict.blocking_report().get("blocks_3ms").unwrap().events,
        1
    );

    let default = Stack::new().func(blocks_3ms);
    TestClient::new(default.service(app.clone())).get("/").await;
    default.blocking_report().assert_clean();

    let off = Stack::new()
        .func(blocks_3ms)
        .blocking_threshold(MS)
        .instrument(false)
        .server_timing(true)
        .record_timings(true);
    let res = TestClient::new(off.service(app)).get("/").await;
    assert_eq!(res.status(), 200);
    off.blocking_report().assert_clean();
    assert!(res.header("server-timing").is_none());
    assert!(res.extensions().get::<RequestTimings>().is_none());
}

/// Parses a Server-Timing header per the W3C grammar:
/// `metric *( OWS "," OWS metric )`, `metric = token *( OWS ";" OWS param )`,
/// `param = token OWS "=" OWS ( token / quoted-string )`.
fn parse_server_timing(value: &str) -> Vec<(String, f64)> {
    fn is_token(s: &str) -> bool {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
    }
    value
        .split(',')
        .map(|metric| {
            let mut parts = metric.trim().split(';');
            let name = parts.next().unwrap().trim();
            assert!(is_token(name), "metric name {name:?} is not a token");
            let mut dur = None;
            for param in parts {
                let (k, v) = param.split_once('=').expect("param has =");
                let (k, v) = (k.trim(), v.trim());
                assert!(is_token(k), "param name {k:?} is not a token");
                assert!(
                    is_token(v) || (v.starts_with('"') && v.ends_with('"')),
                    "{v:?}"
                );
                if k == "dur" {
                    dur = Some(v.parse::<f64>().expect("dur is a number"));
                }
            }
            (name.to_owned(), dur.expect("dur present"))
        })
        .collect()
}

#[tokio::test]
async fn server_timing_header_parses() {
    let config = SeedConfig::default();
    let stack = seed::stack(&config)
        .push(Entry::func(b).named("my wait (async)"))
        .server_timing(true);
    let client = TestClient::new(stack.service(seed::router(&config)));
    let res = client.get("/items/3").await;
    let header = res.header("server-timing").expect("server-timing present");
    let metrics = parse_server_timing(header);
    let names: Vec<_> = metrics.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["another", "timing", "my_wait__async_", "app"]);
    let dur = |name: &str| metrics.iter().find(|(n, _)| n == name).unwrap().1;
    assert!((15.0..60.0).contains(&dur("timing")), "{header}");
    assert!((50.0..90.0).contains(&dur("my_wait__async_")), "{header}");
    assert!((50.0..90.0).contains(&dur("app")), "{header}");
    assert!(dur("another") < 5.0, "{header}");

    // Off by default.
    let res = TestClient::new(seed::app(&config)).get("/items/3").await;
    assert!(res.header("server-timing").is_none());
}

#[tokio::test]
async fn deep_stacks_are_timed_too() {
    async fn pass(req: Request, next: Next<'_>) -> Response {
        next.run(req).await
    }
    let stack = (0..12)
        .fold(Stack::new(), |s, i| {
            s.push(Entry::func(pass).named(format!("m{i}")))
        })
        .push(Entry::func(c).named("slow_tail"))
        .record_timings(true);
    let res = TestClient::new(stack.service(nested_app()))
        .get("/items/1")
        .await;
    let timings = res.extensions().get::<RequestTimings>().unwrap();
    assert_eq!(timings.boundaries.len(), 14);
    assert_eq!(timings.boundaries[0].name, "m0");
    let tail = timings.get("slow_tail").unwrap().exclusive;
    assert!(within(tail, 5.0, 12.0), "{tail:?}");
    assert!(within(timings.get("app").unwrap().exclusive, 2.0, 8.0));
    assert!(within(timings.get("m5").unwrap().exclusive, 0.0, 1.0));
}

/// The route a blocking report names comes from the stack's own router: with a tower layer in
/// the stack (whose requests' contexts are shared), and for a stack nested inside a route of
/// another stack's router, each names its own route template.
#[tokio::test]
async fn routes_are_reported_per_stack_with_tower_layers_and_nesting() {
    async fn slow(req: Request, next: Next<'_>) -> Response {
        std::thread::sleep(20 * MS);
        next.run(req).await
    }
    async fn inner_handler() -> &'static str {
        // Yield once, so the outer endpoint is polled again after its route was reported.
        tokio::task::yield_now().await;
        "inner"
    }
    let inner = Stack::new().push(Entry::func(slow).named("inner_slow"));
    let inner_app = Router::new().route("/svc/{other}", get(inner_handler));
    let outer = Stack::new()
        .layer(
            "set_header",
            tower_http::set_header::SetResponseHeaderLayer::overriding(
                http::header::HeaderName::from_static("x-outer"),
                http::HeaderValue::from_static("1"),
            ),
        )
        .push(Entry::func(slow).named("outer_slow"));
    let outer_app = Router::new()
        .route_service("/svc/{name}", inner.service(inner_app))
        .route("/plain", get(|| async { "plain" }));
    let client = TestClient::new(outer.service(outer_app));

    let res = client.get("/svc/abc").await;
    assert_eq!(res.status(), 200, "{}", res.text());
    assert_eq!(res.text(), "inner");
    assert_eq!(res.header("x-outer"), Some("1"));
    let outer_report = outer.blocking_report();
    let inner_report = inner.blocking_report();
    assert_eq!(
        outer_report.get("outer_slow").unwrap().last_route,
        "/svc/{name}"
    );
    // axum prefixes a template with the one an enclosing router matched, as its `MatchedPath`
    // extractor shows handlers.
    assert_eq!(
        inner_report.get("inner_slow").unwrap().last_route,
        "/svc/{name}/svc/{other}"
    );

    // The next request on the same thread does not inherit a route it did not match.
    let res = client.get("/nowhere").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        outer
            .blocking_report()
            .get("outer_slow")
            .unwrap()
            .last_route,
        "unmatched"
    );
    assert_eq!(client.get("/plain").await.text(), "plain");
    assert_eq!(
        outer
            .blocking_report()
            .get("outer_slow")
            .unwrap()
            .last_route,
        "/plain"
    );
}
