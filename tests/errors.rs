//! Errors and panics become responses where they happen and flow out through the stack.

mod common;

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::{routing::get, Router};
use callnext::serve::Server;
use callnext::{
    Entry, Flow, Hook, HttpError, Middleware, Next, Request, Response, Stack, TestClient,
};
use http::HeaderValue;
use hyper_util::rt::TokioExecutor;

async fn outer(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert("x-outer", HeaderValue::from_static("1"));
    res
}

/// Panics when asked to, before or after calling next.
async fn middle(req: Request, next: Next<'_>) -> Response {
    if req.headers().contains_key("x-panic-before") {
        panic!("middle exploded before next");
    }
    let after = req.headers().contains_key("x-panic-after");
    let mut res = next.run(req).await;
    if after {
        panic!("middle exploded after next");
    }
    res.headers_mut()
        .insert("x-middle", HeaderValue::from_static("1"));
    res
}

async fn inner(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert("x-inner", HeaderValue::from_static("1"));
    res
}

async fn guard(req: Request, next: Next<'_>) -> Result<Response, HttpError> {
    if req.headers().contains_key("x-deny") {
        return Err(HttpError::forbidden("Denied by guard").with_header("x-guard", "denied"));
    }
    Ok(next.run(req).await)
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/panic",
            get(|| async {
                panic!("handler exploded");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/missing",
            get(|| async { Err::<String, _>(HttpError::not_found("Thing not found")) }),
        )
        .route(
            "/detail-object",
            get(|| async {
                Err::<String, _>(HttpError::new(
                    http::StatusCode::CONFLICT,
                    serde_json::json!({"code": "dup", "ids": [1, 2]}),
                ))
            }),
        )
}

fn stack() -> Stack {
    Stack::new()
        .func(outer)
        .func(middle)
        .func(inner)
        .func(guard)
}

#[tokio::test]
async fn handler_error_is_json_and_outer_middlewares_decorate_it() {
    let client = TestClient::new(stack().service(app()));
    let res = client.get("/missing").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.text(), r#"{"detail":"Thing not found"}"#);
    for h in ["x-outer", "x-middle", "x-inner"] {
        assert_eq!(res.header(h), Some("1"), "{h} missing");
    }
    let res = client.get("/detail-object").await;
    assert_eq!(res.status(), 409);
    assert_eq!(res.text(), r#"{"detail":{"code":"dup","ids":[1,2]}}"#);
}

#[tokio::test]
async fn middleware_error_renders_at_its_boundary() {
    let client = TestClient::new(stack().service(app()));
    let res = client.get("/").header("x-deny", "1").await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.text(), r#"{"detail":"Denied by guard"}"#);
    assert_eq!(res.header("x-guard"), Some("denied"));
    // Every middleware outside the guard still saw a response.
    for h in ["x-outer", "x-middle", "x-inner"] {
        assert_eq!(res.header(h), Some("1"), "{h} missing");
    }
}

#[tokio::test]
async fn handler_panic_is_a_500_that_flows_through_every_middleware() {
    let logs = common::Logs::capture();
    let client = TestClient::new(stack().service(app()));
    let res = client.get("/panic").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
    for h in ["x-outer", "x-middle", "x-inner"] {
        assert_eq!(res.header(h), Some("1"), "{h} missing");
    }
    let logs = logs.text();
    assert!(
        logs.contains("middleware=\"app\"") || logs.contains("middleware=app"),
        "{logs}"
    );
    assert!(logs.contains("handler exploded"), "{logs}");
    // And the next request is served.
    assert_eq!(client.get("/").await.status(), 200);
}

#[tokio::test]
async fn middleware_panic_is_a_500_at_its_boundary() {
    let logs = common::Logs::capture();
    let client = TestClient::new(stack().service(app()));

    let res = client.get("/").header("x-panic-before", "1").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
    assert_eq!(res.header("x-outer"), Some("1"), "outer sees the 500");
    assert_eq!(res.header("x-middle"), None);
    assert_eq!(res.header("x-inner"), None, "inner never ran");

    let res = client.get("/").header("x-panic-after", "1").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.header("x-outer"), Some("1"));
    assert_eq!(
        res.header("x-middle"),
        None,
        "the inner response was lost with the panic"
    );

    let logs = logs.text();
    assert!(logs.contains("middle exploded before next"), "{logs}");
    assert!(logs.contains("middle exploded after next"), "{logs}");
    assert!(
        logs.contains("middleware=\"middle\"") || logs.contains("middleware=middle"),
        "{logs}"
    );
    assert_eq!(client.get("/").await.status(), 200);
}

#[tokio::test]
async fn server_keeps_serving_after_panics() {
    let running = common::spawn(Server::new(), stack().service(app())).await;
    let res = common::get(&running.url("/panic")).await;
    assert_eq!(res.status, 500);
    assert_eq!(res.header("x-outer"), Some("1"));
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
    for _ in 0..3 {
        let res = common::get(&running.url("/")).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), "ok");
    }
    running.stop().await;
}

/// A struct middleware whose `call` does work before making its future, and panics there when
/// asked to.
struct SyncPanic;

impl Middleware for SyncPanic {
    #[allow(clippy::manual_async_fn)]
    fn call(&self, req: Request, next: Next<'_>) -> impl Future<Output = Response> + Send {
        if req.headers().contains_key("x-sync-panic") {
            panic!("the synchronous part of SyncPanic exploded");
        }
        async move { next.run(req).await }
    }
}

/// A tower layer whose service's `call` panics when asked to.
#[derive(Clone)]
struct PanicLayer;

impl<S> tower::Layer<S> for PanicLayer {
    type Service = PanicService<S>;
    fn layer(&self, inner: S) -> PanicService<S> {
        PanicService(inner)
    }
}

#[derive(Clone)]
struct PanicService<S>(S);

impl<S: tower::Service<Request>> tower::Service<Request> for PanicService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> S::Future {
        if req.headers().contains_key("x-sync-panic") {
            panic!("the tower layer's call exploded");
        }
        self.0.call(req)
    }
}

fn marks(stack: Stack, names: &[&'static str]) -> Stack {
    names.iter().fold(stack, |s, n| {
        s.push(Entry::middleware(common::Mark(n)).named(*n))
    })
}

fn sync_panic_stacks() -> Vec<(&'static str, Stack)> {
    vec![
        (
            "SyncPanic",
            marks(Stack::new().middleware(SyncPanic), &["x-in1", "x-in2"]),
        ),
        (
            "SyncPanic",
            marks(Stack::new(), &["x-out1", "x-out2"]).middleware(SyncPanic),
        ),
        (
            "panicky_layer",
            marks(Stack::new().layer("panicky_layer", PanicLayer), &["x-in1"]),
        ),
        (
            "panicky_layer",
            marks(Stack::new(), &["x-out1", "x-out2"]).layer("panicky_layer", PanicLayer),
        ),
    ]
}

#[tokio::test]
async fn a_panic_in_the_synchronous_part_of_call_is_caught_at_that_boundary() {
    let logs = common::Logs::capture();
    for (index, (name, stack)) in sync_panic_stacks().into_iter().enumerate() {
        let client = TestClient::new(stack.service(app()));
        let res = client.get("/").header("x-sync-panic", "1").await;
        assert_eq!(res.status(), 500, "stack {index}");
        assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
        // The middlewares outside it still decorate the 500; those inside never ran.
        let outer = index % 2 == 1;
        assert_eq!(res.header("x-out1").is_some(), outer, "stack {index}");
        assert_eq!(res.header("x-out2").is_some(), outer, "stack {index}");
        assert_eq!(res.header("x-in1"), None, "stack {index}");
        // The request after it is served.
        let res = client.get("/").await;
        assert_eq!(res.status(), 200, "stack {index}");
        let marked = if outer { "x-out2" } else { "x-in1" };
        assert_eq!(res.header(marked), Some("1"), "stack {index}");
        let panic_lines: Vec<_> = logs
            .lines_with("exploded")
            .into_iter()
            .filter(|l| {
                l.contains("synchronous part of SyncPanic") || l.contains("tower layer's call")
            })
            .collect();
        assert!(
            panic_lines
                .iter()
                .any(|l| common::names_middleware(l, name)),
            "no log line names {name}: {panic_lines:?}"
        );
        for l in &panic_lines {
            assert!(
                !common::names_middleware(l, "x-out2"),
                "the panic is blamed on the middleware outside it: {l}"
            );
        }
    }
}

#[tokio::test]
async fn a_synchronous_panic_at_index_0_does_not_kill_the_connection() {
    for (index, (_, stack)) in sync_panic_stacks().into_iter().enumerate().step_by(2) {
        let running = common::spawn(Server::new(), stack.service(app())).await;
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let req = http::Request::get(running.url("/"))
            .header("x-sync-panic", "1")
            .body(Default::default())
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("answered")
            .expect("the connection survived");
        assert_eq!(res.status(), 500, "stack {index}");
        assert_eq!(common::get(&running.url("/")).await.status, 200);
        running.stop().await;
    }
}

/// A hook that panics in `on_request` or `on_response` when asked to.
struct PanicHook;

impl Hook for PanicHook {
    type State = bool;

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, bool> {
        if req.headers().contains_key("x-hook-panic-request") {
            panic!("PanicHook's on_request exploded");
        }
        Flow::Continue(req.headers().contains_key("x-hook-panic-response"))
    }

    fn on_response<'a>(&'a self, panic: bool, res: &'a mut Response) -> Flow<'a> {
        if panic {
            panic!("PanicHook's on_response exploded");
        }
        res.headers_mut()
            .insert("x-panic-hook", HeaderValue::from_static("1"));
        Flow::Continue(())
    }
}

#[tokio::test]
async fn a_panicking_hook_is_a_500_at_its_boundary_and_the_hooks_before_it_see_it() {
    let logs = common::Logs::capture();
    let stack = Stack::new()
        .func(outer)
        .on_response("before_hook", |res| {
            res.headers_mut()
                .insert("x-before-hook", HeaderValue::from_static("1"));
        })
        .hook(PanicHook)
        .on_response("after_hook", |res| {
            res.headers_mut()
                .insert("x-after-hook", HeaderValue::from_static("1"));
        });
    let client = TestClient::new(stack.service(app()));

    let res = client.get("/").header("x-hook-panic-request", "1").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text(), r#"{"detail":"Internal Server Error"}"#);
    assert_eq!(res.header("x-outer"), Some("1"));
    assert_eq!(res.header("x-before-hook"), Some("1"));
    assert_eq!(res.header("x-after-hook"), None, "the rest never ran");

    let res = client.get("/").header("x-hook-panic-response", "1").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.header("x-before-hook"), Some("1"));
    assert_eq!(
        res.header("x-after-hook"),
        None,
        "lost with the replaced response"
    );

    let res = client.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("x-panic-hook"), Some("1"));
    for phase in ["on_request", "on_response"] {
        let lines = logs.lines_with(&format!("PanicHook's {phase} exploded"));
        assert!(
            lines
                .iter()
                .any(|l| common::names_middleware(l, "PanicHook")),
            "{phase}: {lines:?}"
        );
    }
}

/// A request value of 60 KB (here a method token, which the request's span carries on every
/// line it logs) is cut in the log as the path is: no line grows past a few kilobytes.
#[tokio::test]
async fn a_huge_method_token_is_cut_in_every_log_line() {
    let logs = common::Logs::capture();
    async fn chatty(req: Request, next: Next<'_>) -> Response {
        tracing::info!("huge-method-marker before");
        let res = next.run(req).await;
        tracing::info!("huge-method-marker after");
        res
    }
    let client = TestClient::new(Stack::new().func(chatty).service(app()));
    let method = http::Method::from_bytes("M".repeat(60 * 1024).as_bytes()).unwrap();
    let res = client.method(method, "/").send().await;
    assert_eq!(res.status(), 405);
    let lines = logs.lines_with("huge-method-marker");
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in lines {
        assert!(line.len() < 4 * 1024, "a line of {} bytes", line.len());
        assert!(line.contains("more bytes]"), "{line}");
    }
}

/// `str(HTTPException(status_code=404))` is `404: Not Found`; with a detail, `404: <detail>`.
#[test]
fn an_http_error_reads_as_str_of_an_http_exception() {
    let plain = callnext::HttpError::new(http::StatusCode::NOT_FOUND, "Not Found");
    assert_eq!(plain.to_string(), "404: Not Found");
    let detailed = callnext::HttpError::not_found("Item not found");
    assert_eq!(detailed.to_string(), "404: Item not found");
    assert_eq!(
        callnext::HttpError::new(http::StatusCode::IM_A_TEAPOT, "I'm a Teapot").to_string(),
        "418: I'm a Teapot"
    );
}
