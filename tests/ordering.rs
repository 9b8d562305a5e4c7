//! Registration order is execution order, for every kind of middleware mixed.

use std::sync::{Arc, Mutex};

use axum::{routing::get, Router};
use callnext::{
    ConfigError, Entry, Middleware, MiddlewareKind, Next, Request, Response, Stack, TestClient,
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

async fn trace_of(stack: &Stack) -> Vec<String> {
    let trace: Trace = Arc::default();
    let mut req = Request::new(Default::default());
    *req.uri_mut() = "/".parse().unwrap();
    req.extensions_mut().insert(trace.clone());
    let res = TestClient::new(stack.service(app())).request(req).await;
    assert_eq!(res.status(), 200, "{}", res.text());
    let out = trace.lock().unwrap().clone();
    out
}

#[tokio::test]
async fn mixed_kinds_run_in_registration_order() {
    let stack = Stack::new()
        .middleware(Recorder { name: "first" })
        .func(func_a)
        .layer("tower", TowerRecorder)
        .middleware(Recorder { name: "last" });
    assert_eq!(
        trace_of(&stack).await,
        ["first>", "func_a>", "tower>", "last>", "app", "<last", "<tower", "<func_a", "<first"]
    );
    assert_eq!(
        stack.to_string(),
        "0 Recorder (struct)\n1 func_a (function)\n2 tower (tower)\n3 Recorder (struct)\n"
    );
    let kinds: Vec<_> = stack.describe().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            MiddlewareKind::Struct,
            MiddlewareKind::Function,
            MiddlewareKind::Tower,
            MiddlewareKind::Struct
        ]
    );
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
        .unwrap();
    assert_eq!(
        trace_of(&stack).await,
        ["tower>", "a>", "b>", "c>", "func_a>", "app", "<func_a", "<c", "<b", "<a", "<tower"]
    );
    assert_eq!(
        stack.to_string(),
        "0 tower (tower)\n1 a (struct)\n2 b (struct)\n3 c (struct)\n4 func_a (function)\n"
    );
}

#[test]
fn unknown_or_ambiguous_names_fail_when_built() {
    let stack = Stack::new().push(Entry::func(func_a).named("auth"));
    let err = stack
        .clone()
        .insert_before("cors", Entry::func(func_a))
        .unwrap_err();
    assert!(matches!(err, ConfigError::UnknownMiddleware { .. }));
    assert_eq!(
        err.to_string(),
        "no middleware named `cors` in the stack (it has: auth)"
    );

    let stack = stack.push(Entry::func(func_a).named("auth"));
    let err = stack.insert_after("auth", Entry::func(func_a)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "middleware name `auth` is ambiguous: 2 entries carry it; give them distinct names"
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
        .middleware(Recorder { name: "outer" })
        .middleware(Deny)
        .middleware(Recorder { name: "never" });
    assert_eq!(
        trace_of_status(&stack).await,
        (403, vec!["outer>".to_owned(), "<outer".to_owned()])
    );
}

async fn trace_of_status(stack: &Stack) -> (u16, Vec<String>) {
    let trace: Trace = Arc::default();
    let mut req = Request::new(Default::default());
    *req.uri_mut() = "/".parse().unwrap();
    req.extensions_mut().insert(trace.clone());
    let res = TestClient::new(stack.service(app())).request(req).await;
    let out = trace.lock().unwrap().clone();
    (res.status().as_u16(), out)
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
    let client = TestClient::new(Stack::new().func(outer).func(inner).service(app));
    let res = client.get("/").await;
    let seen: Vec<_> = res.headers().get_all("x-seen").iter().collect();
    assert_eq!(seen, ["inner", "outer"]);
}
