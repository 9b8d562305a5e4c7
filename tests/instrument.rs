//! Exclusive poll time, the blocking detector, Server-Timing and request spans.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::{routing::get, Router};
use callnext::extract::Path;
use callnext::instrument::RequestTimings;
use callnext::serve::Server;
use callnext::{Entry, Flow, Hook, Middleware, Next, Request, Response, Stack, TestClient};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

const MS: Duration = Duration::from_millis(1);

/// Blocks 20 ms before calling next.
async fn a(req: Request, next: Next<'_>) -> Response {
    std::thread::sleep(20 * MS);
    next.run(req).await
}

/// Awaits a 200 ms async sleep: waiting, not blocking (long beside a's 20 ms of blocking, so
/// that comparing them leaves room for a busy machine).
async fn b(req: Request, next: Next<'_>) -> Response {
    tokio::time::sleep(200 * MS).await;
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
            busy(2 * MS);
            id.to_string()
        }),
    )
}

/// Keeps the thread busy for `d`: blocking under the threshold that a sleep, woken late by a
/// busy machine's scheduler, could overrun.
fn busy(d: Duration) {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// At least `lo_ms`. Upper bounds are left out: on a busy machine a thread descheduled in the
/// middle of a poll is charged for the time it waited, so only lower bounds and orderings are
/// what the code guarantees.
fn at_least(d: Duration, lo_ms: f64) -> bool {
    d.as_secs_f64() * 1000.0 >= lo_ms
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
    // Each boundary is charged its own blocking only: its own sleep is a lower bound, and the
    // one that only waited asynchronously is charged less than any that blocked.
    assert!(at_least(excl("a"), 20.0), "a: {:?}", excl("a"));
    assert!(at_least(excl("c"), 5.0), "c: {:?}", excl("c"));
    assert!(at_least(excl("app"), 2.0), "app: {:?}", excl("app"));
    assert!(excl("b") < excl("c"), "b {:?} c {:?}", excl("b"), excl("c"));
    assert!(
        excl("a") < Duration::from_millis(150),
        "a is not charged b's async wait"
    );
    // Wall time excluding inner layers shows what each waited for, async included.
    let wall = |name| timings.get(name).unwrap().wall_excluding_inner;
    assert!(at_least(wall("b"), 200.0), "b wall: {:?}", wall("b"));
    assert!(at_least(wall("a"), 20.0), "a wall: {:?}", wall("a"));
    assert!(wall("a") < wall("b"), "a's wall excludes b's wait");
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
    // What a request id middleware does: records the id into the request's span.
    async fn fine(req: Request, next: Next<'_>) -> Response {
        if let Some(id) = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            tracing::Span::current().record("request_id", id);
        }
        next.run(req).await
    }
    let stack = Stack::new()
        .func(fine)
        .push(Entry::middleware(Slow).named("slow_auth"));
    let client = TestClient::new(stack.service(nested_app()));
    for _ in 0..3 {
        let res = client
            .get("/items/5")
            .header("x-request-id", "req-42")
            .await;
        assert_eq!(res.status(), 200);
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
    // Published as soon as the blocking poll ended (the route was known by then), so before
    // the request's status was.
}

#[tokio::test]
async fn threshold_is_configurable_and_instrumentation_can_be_off() {
    async fn blocks_3ms(req: Request, next: Next<'_>) -> Response {
        busy(3 * MS);
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

/// The seed's timing middleware: awaits 10 ms before the rest and 5 ms after.
async fn timing(req: Request, next: Next<'_>) -> Response {
    tokio::time::sleep(10 * MS).await;
    let res = next.run(req).await;
    tokio::time::sleep(5 * MS).await;
    res
}

struct Another;

impl Middleware for Another {
    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        next.run(req).await
    }
}

#[tokio::test]
async fn server_timing_header_parses() {
    let app = Router::new().route(
        "/items/{id}",
        get(|| async {
            tokio::time::sleep(50 * MS).await;
            "item"
        }),
    );
    let stack = Stack::new()
        .push(Entry::middleware(Another).named("another"))
        .func(timing)
        .on_request("hook", |_req| {})
        .push(Entry::func(b).named("my wait (async)"))
        .server_timing(true);
    let client = TestClient::new(stack.service(app.clone()));
    let res = client.get("/items/3").await;
    let header = res.header("server-timing").expect("server-timing present");
    let metrics = parse_server_timing(header);
    let names: Vec<_> = metrics.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["another", "timing", "hook", "my_wait__async_", "app"]
    );
    let dur = |name: &str| metrics.iter().find(|(n, _)| n == name).unwrap().1;
    assert!(dur("timing") >= 15.0, "{header}");
    assert!(dur("my_wait__async_") >= 50.0, "{header}");
    assert!(dur("app") >= 50.0, "{header}");
    assert!(dur("another") < dur("timing"), "{header}");
    assert!(dur("hook") < dur("timing"), "{header}");

    // Off by default.
    let res = TestClient::new(Stack::new().func(timing).service(app))
        .get("/items/3")
        .await;
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
    assert!(at_least(tail, 5.0), "{tail:?}");
    assert!(at_least(timings.get("app").unwrap().exclusive, 2.0));
    assert!(timings.get("m5").unwrap().exclusive < tail);
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
    // The inner stack's blocking is its own: the outer stack's app, which served it, is not
    // blamed for it.
    assert!(
        outer_report.get("app").is_none(),
        "the outer app was blamed for the inner stack: {outer_report}"
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

/// Blocks 20 ms in `on_request`.
struct BlockingHook;

impl Hook for BlockingHook {
    type State = ();

    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a> {
        std::thread::sleep(20 * MS);
        Flow::Continue(())
    }
}

/// Blocks 5 ms in `on_response`.
struct SlowResponseHook;

impl Hook for SlowResponseHook {
    type State = ();

    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a> {
        Flow::Continue(())
    }

    fn on_response<'a>(&'a self, _: (), _res: &'a mut Response) -> Flow<'a> {
        std::thread::sleep(5 * MS);
        Flow::Continue(())
    }
}

/// Waits 50 ms on async work in `on_request`.
struct WaitingHook;

impl Hook for WaitingHook {
    type State = ();

    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a> {
        Flow::wait(async {
            tokio::time::sleep(50 * MS).await;
            Ok::<(), callnext::HttpError>(())
        })
    }
}

#[tokio::test]
async fn each_hook_has_its_own_exclusive_time_and_blame() {
    let stack = Stack::new()
        .push(Entry::hook(BlockingHook).named("h_block"))
        .on_request("h_fine", |_req| {})
        .push(Entry::hook(WaitingHook).named("h_wait"))
        .push(Entry::hook(SlowResponseHook).named("h_slow_response"))
        .record_timings(true);
    let res = TestClient::new(stack.service(nested_app()))
        .get("/items/4")
        .await;
    assert_eq!(res.text(), "4");
    let timings = res.extensions().get::<RequestTimings>().unwrap();
    let names: Vec<_> = timings.boundaries.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        ["h_block", "h_fine", "h_wait", "h_slow_response", "app"]
    );
    let excl = |name| timings.get(name).unwrap().exclusive;
    assert!(at_least(excl("h_block"), 20.0), "{:?}", excl("h_block"));
    assert!(
        at_least(excl("h_slow_response"), 5.0),
        "{:?}",
        excl("h_slow_response")
    );
    assert!(at_least(excl("app"), 2.0), "{:?}", excl("app"));
    assert!(excl("h_fine") < excl("h_slow_response"));
    assert!(
        excl("h_wait") < excl("h_slow_response"),
        "waiting is not blocking"
    );
    let wall = |name| timings.get(name).unwrap().wall_excluding_inner;
    assert!(at_least(wall("h_wait"), 50.0), "{:?}", wall("h_wait"));

    let report = stack.blocking_report();
    let blocked = report.get("h_block").expect("the blocking hook is named");
    assert_eq!(blocked.events, 1);
    assert_eq!(blocked.last_route, "/items/{item_id}");
    assert!(report.get("h_fine").is_none());
    assert!(report.get("h_wait").is_none());
}

/// Calls the rest of the stack, then blocks 20 ms and never finishes.
async fn stuck_after_next(entered: &Arc<Notify>, req: Request, next: Next<'_>) -> Response {
    let _res = next.run(req).await;
    std::thread::sleep(20 * MS);
    entered.notify_one();
    std::future::pending().await
}

/// Blocks 20 ms before the rest of the stack and never finishes.
async fn stuck_before_next(entered: &Arc<Notify>, _req: Request, _next: Next<'_>) -> Response {
    std::thread::sleep(20 * MS);
    entered.notify_one();
    std::future::pending().await
}

/// Sends a request over a real socket, waits until the stack is stuck, then disconnects.
async fn request_then_disconnect(addr: std::net::SocketAddr, path: &str, entered: &Notify) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    entered.notified().await;
    drop(socket);
}

#[tokio::test]
async fn blocking_is_reported_for_requests_that_never_complete() {
    // The route is known when the poll crosses the threshold: reported at once.
    let entered = Arc::new(Notify::new());
    let stack = Stack::new()
        .push(Entry::func_with_state(Arc::clone(&entered), stuck_after_next).named("stuck_after"));
    let running = common::spawn(Server::new(), stack.service(nested_app())).await;
    request_then_disconnect(running.addr, "/items/1", &entered).await;
    let report = stack.blocking_report();
    let stuck = report.get("stuck_after").expect("reported");
    assert_eq!(stuck.events, 1);
    assert!(stuck.worst >= 20 * MS);
    assert_eq!(stuck.last_route, "/items/{item_id}");
    running.stop().await;

    // Under `Router::layer` the route was matched before the stack; the request is dropped
    // when the client goes away, and the event is published then.
    let entered = Arc::new(Notify::new());
    let stack = Stack::new().push(
        Entry::func_with_state(Arc::clone(&entered), stuck_before_next).named("stuck_before"),
    );
    let app: Router = nested_app().layer(stack.clone());
    let running = common::spawn(Server::new(), app).await;
    request_then_disconnect(running.addr, "/items/2", &entered).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.blocking_report().get("stuck_before").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped request's blocking event was never reported"
        );
        tokio::time::sleep(10 * MS).await;
    }
    let report = stack.blocking_report();
    let stuck = report.get("stuck_before").unwrap();
    assert_eq!(stuck.last_route, "/items/{item_id}");
    assert_eq!(stuck.last_method, "GET");
    running.stop().await;
}

/// A response body whose first `poll_frame` blocks 20 ms.
struct BlockingBody {
    done: bool,
}

impl http_body::Body for BlockingBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.done {
            return std::task::Poll::Ready(None);
        }
        self.done = true;
        std::thread::sleep(20 * MS);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data("compressed".into()))))
    }
}

#[tokio::test]
async fn response_body_polls_are_timed_as_the_body_boundary() {
    let app = Router::new().route(
        "/stream/{id}",
        get(|| async { callnext::Body::new(BlockingBody { done: false }) }),
    );
    let stack = Stack::new().func(b);
    let res = TestClient::new(stack.service(app)).get("/stream/1").await;
    assert_eq!(res.text(), "compressed");
    let report = stack.blocking_report();
    let body = report
        .get("body")
        .expect("the body's blocking poll is reported");
    assert_eq!(body.events, 1);
    assert!(body.worst >= 20 * MS);
    assert_eq!(body.last_route, "/stream/{id}");
    assert!(
        report.get("app").is_none(),
        "the handler itself did not block"
    );
}

#[tokio::test]
async fn two_stacks_keep_separate_statistics() {
    async fn slow(req: Request, next: Next<'_>) -> Response {
        std::thread::sleep(20 * MS);
        next.run(req).await
    }
    async fn quick(req: Request, next: Next<'_>) -> Response {
        next.run(req).await
    }
    let blocking = Stack::new().push(Entry::func(slow).named("auth"));
    let clean = Stack::new().push(Entry::func(quick).named("auth"));
    TestClient::new(blocking.service(nested_app()))
        .get("/items/1")
        .await;
    TestClient::new(clean.service(nested_app()))
        .get("/items/1")
        .await;
    assert_eq!(blocking.blocking_report().get("auth").unwrap().events, 1);
    clean.blocking_report().assert_clean();

    // Services built from one stack (and its clones) share its statistics.
    let service = blocking.clone().service(nested_app());
    TestClient::new(service.clone()).get("/items/1").await;
    assert_eq!(blocking.blocking_report().get("auth").unwrap().events, 2);
    assert_eq!(service.blocking_report(), blocking.blocking_report());
}

#[tokio::test]
async fn a_panic_in_a_streamed_body_ends_that_response_and_is_logged() {
    let logs = common::Logs::capture();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async {
                // The first chunk goes out with the head; the second poll, later, panics.
                let chunks = futures_util::stream::unfold(0, |n| async move {
                    if n == 1 {
                        tokio::time::sleep(20 * MS).await;
                        panic!("the event source exploded");
                    }
                    Some((
                        Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"first")),
                        n + 1,
                    ))
                });
                callnext::Body::from_stream(chunks)
            }),
        )
        .route("/ok", get(|| async { "ok" }));
    let running = common::spawn(Server::new(), Stack::new().func(b).service(app)).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let res = client
        .get(running.url("/stream").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = http_body_util::BodyExt::collect(res.into_body()).await;
    assert!(body.is_err(), "the cut-short body ends with an error");
    let lines = logs.lines_with("the event source exploded");
    assert!(
        lines.iter().any(|l| common::names_middleware(l, "body")),
        "{lines:?}"
    );
    assert_eq!(common::get(&running.url("/ok")).await.status, 200);
    running.stop().await;
}
