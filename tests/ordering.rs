//! Registration order is execution order, for every kind of middleware mixed; names are
//! unique.

use std::sync::{Arc, Mutex};

use axum::{routing::get, Router};
use callnext::{
    ConfigErrorKind, Entry, Flow, Hook, HttpError, Middleware, MiddlewareKind, Next, Request,
    Response, Stack, TestClient,
};
use http::HeaderValue;
use tower::{Layer, Service};

type Trace = Arc<Mutex<Vec<String>>>;

/// Records "name>" on the way in and "<name" on the way out, in the request's shared trace.
struct Recorder {
    name: &'static str,
}

impl Middleware for Recorder {
    async fn call(&self, req: Request, next: Next<'_>) -> Response {
        let trace = req.extensions().get::<Trace>().cloned().unwrap();
        trace.lock().unwrap().push(format!("{}>", self.name));
        let res = next.run(req).await;
        trace.lock().unwrap().push(format!("<{}", self.name));
        res
    }
}

async fn func_a(req: Request, next: Next<'_>) -> Response {
    let trace = req.extensions().get::<Trace>().cloned().unwrap();
    trace.lock().unwrap().push("func_a>".into());
    let res = next.run(req).await;
    trace.lock().unwrap().push("<func_a".into());
    res
}

/// A plain tower layer, written the long way, that records like the others.
#[derive(Clone)]
struct TowerRecorder;

impl<S> Layer<S> for TowerRecorder {
    type Service = TowerRecorderService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TowerRecorderService(inner)
    }
}

#[derive(Clone)]
struct TowerRecorderService<S>(S);

impl<S> Service<Request> for TowerRecorderService<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let trace = req.extensions().get::<Trace>().cloned().unwrap();
        trace.lock().unwrap().push("tower>".into());
        let fut = self.0.call(req);
        Box::pin(async move {
            let res = fut.await;
            trace.lock().unwrap().push("<tower".into());
            res
        })
    }
}

/// A hook that records like the others: "name>" in `on_request`, "<name" in `on_response`.
struct HookRecorder(&'static str);

impl Hook for HookRecorder {
    type State = Trace;

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Trace> {
        let trace = req.extensions().get::<Trace>().cloned().unwrap();
        trace.lock().unwrap().push(format!("{}>", self.0));
        Flow::Continue(trace)
    }

    fn on_response<'a>(&'a self, trace: Trace, _res: &'a mut Response) -> Flow<'a> {
        trace.lock().unwrap().push(format!("<{}", self.0));
        Flow::Continue(())
    }
}

fn app() -> Router {
    Router::new().route(
        "/",
        get(
            |axum::Extension(trace): axum::Extension<Trace>| async move {
                trace.lock().unwrap().push("app".into());
                "ok"
            },
        ),
    )
}

/// The status and the trace of one request through `stack`.
async fn trace_of(stack: &Stack) -> (u16, Vec<String>) {
    let trace: Trace = Arc::default();
    let mut req = Request::new(Default::default());
    *req.uri_mut() = "/".parse().unwrap();
    req.extensions_mut().insert(trace.clone());
    let res = TestClient::new(stack.service(app())).request(req).await;
    let out = trace.lock().unwrap().clone();
    (res.status().as_u16(), out)
}

#[tokio::test]
async fn mixed_kinds_run_in_registration_order() {
    let stack = Stack::new()
        .push(Entry::middleware(Recorder { name: "first" }).named("first"))
        .func(func_a)
        .push(Entry::hook(HookRecorder("hook1")).named("hook1"))
        .push(Entry::hook(HookRecorder("hook2")).named("hook2"))
        .layer("tower", TowerRecorder)
        .push(Entry::hook(HookRecorder("hook3")).named("hook3"))
        .push(Entry::middleware(Recorder { name: "last" }).named("last"));
    assert_eq!(
        trace_of(&stack).await,
        (
            200,
            [
                "first>", "func_a>", "hook1>", "hook2>", "tower>", "hook3>", "last>", "app",
                "<last", "<hook3", "<tower", "<hook2", "<hook1", "<func_a", "<first"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    assert_eq!(
        stack.to_string(),
        "0 first (struct)\n1 func_a (function)\n2 hook1 (hook)\n3 hook2 (hook)\n4 tower (tower)\n5 hook3 (hook)\n6 last (struct)\n"
    );
    let kinds: Vec<_> = stack.describe().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            MiddlewareKind::Struct,
            MiddlewareKind::Function,
            MiddlewareKind::Hook,
            MiddlewareKind::Hook,
            MiddlewareKind::Tower,
            MiddlewareKind::Hook,
            MiddlewareKind::Struct
        ]
    );
}

#[tokio::test]
async fn long_runs_of_hooks_keep_their_order() {
    // More hooks in a row than one group drives: they become several groups.
    let names: Vec<&'static str> = (0..19)
        .map(|i| &*Box::leak(format!("h{i}").into_boxed_str()))
        .collect();
    let stack = names.iter().fold(Stack::new(), |s, n| {
        s.push(Entry::hook(HookRecorder(n)).named(*n))
    });
    let (status, trace) = trace_of(&stack).await;
    assert_eq!(status, 200);
    let mut expected: Vec<String> = names.iter().map(|n| format!("{n}>")).collect();
    expected.push("app".into());
    expected.extend(names.iter().rev().map(|n| format!("<{n}")));
    assert_eq!(trace, expected);
}

#[tokio::test]
async fn insert_before_and_after_by_name() {
    let stack = Stack::new()
        .push(Entry::middleware(Recorder { name: "a" }).named("a"))
        .push(Entry::middleware(Recorder { name: "c" }).named("c"))
        .insert_before("c", Entry::middleware(Recorder { name: "b" }).named("b"))
        .unwrap()
        .insert_after("c", Entry::func(func_a))
        .unwrap()
        .insert_before("a", Entry::layer("tower", TowerRecorder))
        .unwrap()
        .insert_after("b", Entry::hook(HookRecorder("hook")).named("hook"))
        .unwrap();
    assert_eq!(
        trace_of(&stack).await.1,
        [
            "tower>", "a>", "b>", "hook>", "c>", "func_a>", "app", "<func_a", "<c", "<hook", "<b",
            "<a", "<tower"
        ]
    );
    assert_eq!(
        stack.to_string(),
        "0 tower (tower)\n1 a (struct)\n2 b (struct)\n3 hook (hook)\n4 c (struct)\n5 func_a (function)\n"
    );
}

#[test]
fn unknown_names_fail_when_built() {
    let stack = Stack::new().push(Entry::func(func_a).named("auth"));
    let err = stack
        .clone()
        .insert_before("cors", Entry::func(func_a))
        .unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::UnknownMiddleware);
    assert_eq!(
        err.to_string(),
        "no middleware named `cors` in the stack (it has: auth)"
    );
}

#[test]
fn duplicate_names_are_rejected_on_every_way_of_adding() {
    let duplicate = "two middlewares are named `func_a`; give one another name with `Entry::named`";
    let base = || Stack::new().func(func_a);
    async fn with_state(_: &u8, req: Request, next: Next<'_>) -> Response {
        next.run(req).await
    }
    let built: Vec<(&str, Stack)> = vec![
        ("push", base().push(Entry::func(func_a))),
        ("func", base().func(func_a)),
        (
            "func_with_state",
            base()
                .func_with_state(0u8, with_state)
                .push(Entry::func_with_state(1u8, with_state)),
        ),
        (
            "middleware",
            base().push(Entry::middleware(Recorder { name: "x" }).named("func_a")),
        ),
        (
            "hook",
            base().push(Entry::hook(HookRecorder("x")).named("func_a")),
        ),
        ("on_request", base().on_request("func_a", |_req| {})),
        ("on_response", base().on_response("func_a", |_res| {})),
        ("layer", base().layer("func_a", TowerRecorder)),
    ];
    for (way, stack) in built {
        let err = stack.validate().unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::DuplicateName, "{way}");
        if way != "func_with_state" {
            assert_eq!(err.to_string(), duplicate, "{way}");
        }
        // Building fails with the same message, never a request.
        let err = stack.try_service(app()).unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::DuplicateName, "{way}");
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stack.service(app())))
            .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("two middlewares are named"),
            "{way}: {message}"
        );
    }

    for insert in [
        base().insert_before("func_a", Entry::func(func_a)),
        base().insert_after("func_a", Entry::func(func_a)),
    ] {
        let err = insert.unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::DuplicateName);
        assert_eq!(err.to_string(), duplicate);
    }
}

#[test]
fn the_names_of_callnexts_own_boundaries_are_reserved() {
    for name in ["app", "body", ""] {
        let err = Stack::new()
            .push(Entry::func(func_a).named(name))
            .validate()
            .unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::ReservedName, "{name:?}");
    }
    let err = Stack::new()
        .blocking_threshold(std::time::Duration::ZERO)
        .validate()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `blocking_threshold`: must be greater than zero (every poll would be blocking)"
    );
}

#[tokio::test]
async fn short_circuit_skips_the_rest() {
    struct Deny;
    impl Middleware for Deny {
        async fn call(&self, _req: Request, _next: Next<'_>) -> Response {
            let mut res = Response::new("denied".into());
            *res.status_mut() = http::StatusCode::FORBIDDEN;
            res
        }
    }
    let stack = Stack::new()
        .push(Entry::middleware(Recorder { name: "outer" }).named("outer"))
        .middleware(Deny)
        .push(Entry::middleware(Recorder { name: "never" }).named("never"));
    assert_eq!(
        trace_of(&stack).await,
        (403, vec!["outer>".to_owned(), "<outer".to_owned()])
    );
}

/// Answers 401 without calling the rest of the stack.
struct DenyHook;

impl Hook for DenyHook {
    type State = ();

    fn on_request<'a>(&'a self, _req: &'a mut Request) -> Flow<'a> {
        Flow::respond(HttpError::unauthorized("no"))
    }
}

#[tokio::test]
async fn a_hook_short_circuit_runs_the_response_side_of_the_hooks_before_it() {
    let stack = Stack::new()
        .push(Entry::middleware(Recorder { name: "outer" }).named("outer"))
        .push(Entry::hook(HookRecorder("h1")).named("h1"))
        .push(Entry::hook(HookRecorder("h2")).named("h2"))
        .hook(DenyHook)
        .push(Entry::hook(HookRecorder("h4")).named("h4"))
        .push(Entry::middleware(Recorder { name: "never" }).named("never"));
    assert_eq!(
        trace_of(&stack).await,
        (
            401,
            ["outer>", "h1>", "h2>", "<h2", "<h1", "<outer"]
                .map(String::from)
                .to_vec()
        )
    );
}

#[tokio::test]
async fn headers_set_on_the_way_out_nest_inside_out() {
    async fn outer(req: Request, next: Next<'_>) -> Response {
        let mut res = next.run(req).await;
        res.headers_mut()
            .append("x-seen", HeaderValue::from_static("outer"));
        res
    }
    async fn inner(req: Request, next: Next<'_>) -> Response {
        let mut res = next.run(req).await;
        res.headers_mut()
            .append("x-seen", HeaderValue::from_static("inner"));
        res
    }
    let app = Router::new().route("/", get(|| async { "ok" }));
    let client = TestClient::new(
        Stack::new()
            .func(outer)
            .on_response("hook", |res| {
                res.headers_mut()
                    .append("x-seen", HeaderValue::from_static("hook"));
            })
            .func(inner)
            .service(app),
    );
    let res = client.get("/").await;
    let seen: Vec<_> = res.headers().get_all("x-seen").iter().collect();
    assert_eq!(seen, ["inner", "hook", "outer"]);
}
