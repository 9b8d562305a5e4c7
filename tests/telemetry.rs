//! OpenTelemetry traces against an OTLP/HTTP receiver started here on 127.0.0.1 (its export
//! requests decoded with the OTLP protobuf and JSON schemas): the server span's attributes,
//! the middlewares as child spans or events, a caller's `traceparent` continued, sampling with
//! errors and blocking polls kept, the trace id on the request and in the access log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use callnext::middleware::SetRequestId;
use callnext::telemetry::{MiddlewareSpans, Protocol, Telemetry, TraceContext, TrustIncoming};
use callnext::{Next, Request, Stack, TestClient, TrustedProxies};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[derive(Clone, Default)]
struct Collector {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

async fn collect(State(c): State<Collector>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let request = if headers["content-type"] == "application/json" {
        serde_json::from_slice(&body).unwrap()
    } else {
        assert_eq!(headers["content-type"], "application/x-protobuf");
        ExportTraceServiceRequest::decode(&body[..]).unwrap()
    };
    c.requests.lock().unwrap().push(request);
    StatusCode::OK
}

/// A collector on 127.0.0.1 and the endpoint to give the exporter.
async fn collector() -> (String, Collector) {
    let c = Collector::default();
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(c.clone());
    let addr = common::serve_router(app).await;
    (format!("http://{addr}"), c)
}

impl Collector {
    /// Every span received, with the resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for request in self.requests.lock().unwrap().iter() {
            for rs in &request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| attr(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    out.extend(ss.spans.iter().map(|s| (service.clone(), s.clone())));
                }
            }
        }
        out
    }
}

fn attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Any::StringValue(s) => s.clone(),
            Any::IntValue(i) => i.to_string(),
            Any::DoubleValue(d) => d.to_string(),
            Any::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends what is queued (blocking, so off the test's thread).
async fn flush(telemetry: &Telemetry) {
    let t = telemetry.clone();
    assert!(
        tokio::task::spawn_blocking(move || t.flush(Duration::from_secs(30)))
            .await
            .unwrap()
    );
}

async fn timing(req: Request, next: Next<'_>) -> callnext::Response {
    next.run(req).await
}

/// A middleware that blocks its thread for 150 ms, over the 100 ms threshold of these stacks
/// (a threshold no other request's poll reaches on a busy machine: a blocking poll keeps its
/// trace whatever the sampling ratio).
async fn blocker(req: Request, next: Next<'_>) -> callnext::Response {
    if req.uri().path() == "/block" {
        std::thread::sleep(Duration::from_millis(150));
    }
    next.run(req).await
}

fn app() -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|ctx: axum::Extension<TraceContext>| async move { ctx.trace_id().to_owned() }),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/block", get(|| async { "blocked" }))
}

fn client(telemetry: &Telemetry) -> TestClient<callnext::StackService> {
    client_in(Stack::new(), telemetry)
}

/// The client behind a proxy the stack trusts (its peer, 192.0.2.10).
fn proxied_client(telemetry: &Telemetry) -> TestClient<callnext::StackService> {
    let proxies = TrustedProxies::parse(["192.0.2.10"]).unwrap();
    client_in(Stack::new().trusted_proxies(proxies), telemetry)
}

fn client_in(stack: Stack, telemetry: &Telemetry) -> TestClient<callnext::StackService> {
    let stack = stack
        .hook(SetRequestId::new())
        .func(timing)
        .func(blocker)
        .blocking_threshold(Duration::from_millis(100))
        .telemetry(telemetry.clone());
    TestClient::new(stack.service(app())).peer("192.0.2.10:40000".parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_span_has_its_attributes_and_the_middlewares_as_children() {
    let (endpoint, c) = collector().await;
    let telemetry = Telemetry::builder()
        .endpoint(endpoint)
        .service_name("orders")
        .build()
        .unwrap();
    let client = client(&telemetry);
    let res = client
        .get("/items/7")
        .header("host", "api.example:8443")
        .await;
    assert_eq!(res.status(), 200);
    let trace_id = res.text();
    assert_eq!(trace_id.len(), 32);
    flush(&telemetry).await;

    let spans = c.spans();
    let (service, server) = spans
        .iter()
        .find(|(_, s)| s.kind == 2)
        .expect("a server span")
        .clone();
    assert_eq!(service, "orders");
    assert_eq!(server.name, "GET /items/{id}");
    assert_eq!(hex(&server.trace_id), trace_id);
    assert!(server.parent_span_id.is_empty());
    let a = |k: &str| attr(&server.attributes, k);
    assert_eq!(a("http.request.method").as_deref(), Some("GET"));
    assert_eq!(a("http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(a("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(a("url.path").as_deref(), Some("/items/7"));
    assert_eq!(a("client.address").as_deref(), Some("192.0.2.10"));
    assert_eq!(a("server.address").as_deref(), Some("api.example"));

    // The middlewares, in stack order, each inside the server span and the one before it.
    let mut children: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == server.span_id)
        .collect();
    children.sort_by_key(|s| s.start_time_unix_nano);
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["request_id", "timing", "blocker", "app"]);
    for child in &children {
        assert_eq!(child.trace_id, server.trace_id);
        assert_eq!(child.kind, 1);
        assert!(child.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(child.end_time_unix_nano <= server.end_time_unix_nano);
        assert!(child.start_time_unix_nano <= child.end_time_unix_nano);
        let exclusive: f64 = attr(&child.attributes, "callnext.exclusive_ms")
            .unwrap()
            .parse()
            .unwrap();
        let wall: f64 = attr(&child.attributes, "callnext.wall_ms")
            .unwrap()
            .parse()
            .unwrap();
        assert!(exclusive >= 0.0 && wall >= 0.0);
    }
    telemetry.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_traceparent_continues_its_trace_and_its_sampling() {
    let (endpoint, c) = collector().await;
    let telemetry = Telemetry::builder().endpoint(endpoint).build().unwrap();
    let client = proxied_client(&telemetry);
    let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = client
        .get("/items/1")
        .header("traceparent", format!("00-{caller}-00f067aa0ba902b7-01"))
        .header("tracestate", "congo=t61rcWkgMzE")
        .await;
    assert_eq!(res.text(), caller);
    // Malformed ones start a trace of their own.
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_owned(),
        format!("00-{caller}-0000000000000000-01"),
        format!("00-{}-00f067aa0ba902b7-01", caller.to_uppercase()),
        format!("ff-{caller}-00f067aa0ba902b7-01"),
        format!("00-{caller}-00f067aa0ba902b7-01-extra"),
        format!("00-{caller}-00f067aa0ba902b7"),
    ] {
        let res = client
            .get("/items/1")
            .header("traceparent", bad.clone())
            .await;
        assert_ne!(res.text(), caller, "{bad}");
        assert_eq!(res.text().len(), 32);
    }
    // Not sampled by the caller: nothing is exported for it.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    client
        .get("/items/2")
        .header("traceparent", format!("00-{unsampled}-b7ad6b7169203331-00"))
        .await;
    flush(&telemetry).await;
    let spans = c.spans();
    let server = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == 2 && hex(&s.trace_id) == caller)
        .unwrap();
    assert_eq!(hex(&server.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(server.trace_state, "congo=t61rcWkgMzE");
    assert!(spans.iter().all(|(_, s)| hex(&s.trace_id) != unsampled));
    telemetry.shutdown(Duration::from_secs(5));
}

/// A client reaching the server directly chooses neither its trace id nor its sampling; a
/// trusted caller's sampled flag is honoured within `max_incoming_sampled` a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_choose_its_trace_or_force_sampling() {
    let (endpoint, c) = collector().await;
    let telemetry = Telemetry::builder()
        .endpoint(endpoint)
        .sampling_ratio(0.0)
        .always_keep(false, false)
        .build()
        .unwrap();
    let direct = client(&telemetry);
    let caller = "4bf92f3577b34da6a3ce929d0e0e4736";
    for _ in 0..50 {
        let res = direct
            .get("/items/1")
            .header("traceparent", format!("00-{caller}-00f067aa0ba902b7-01"))
            .await;
        assert_ne!(res.text(), caller);
    }
    flush(&telemetry).await;
    assert_eq!(
        c.spans().len(),
        0,
        "spans exported for a client's traceparent"
    );
    telemetry.shutdown(Duration::from_secs(5));

    let (endpoint, c) = collector().await;
    let telemetry = Telemetry::builder()
        .endpoint(endpoint)
        .sampling_ratio(0.0)
        .always_keep(false, false)
        .middlewares(MiddlewareSpans::Off)
        .trust_incoming(TrustIncoming::Always)
        .max_incoming_sampled(10)
        .build()
        .unwrap();
    let trusting = client(&telemetry);
    let started = std::time::Instant::now();
    for i in 0..50u32 {
        let trace = format!("{:032x}", 0x4bf9_2f35_u128 << 64 | u128::from(i + 1));
        let res = trusting
            .get("/items/1")
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .await;
        assert_eq!(res.text(), trace, "trusted: the caller's trace continues");
    }
    // Ten a second at most, in however many seconds the requests took.
    let seconds = started.elapsed().as_secs() + 2;
    flush(&telemetry).await;
    let kept = c.spans().len() as u64;
    assert!(
        kept >= 10 && kept <= 10 * seconds,
        "{kept} kept in under {seconds} s"
    );
    telemetry.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_blocking_polls_are_kept_whatever_the_ratio() {
    let (endpoint, c) = collector().await;
    let telemetry = Telemetry::builder()
        .endpoint(endpoint)
        .sampling_ratio(0.0)
        .build()
        .unwrap();
    let client = client(&telemetry);
    for _ in 0..5 {
        assert_eq!(client.get("/items/1").await.status(), 200);
    }
    assert_eq!(client.get("/fail").await.status(), 500);
    assert_eq!(client.get("/block").await.status(), 200);
    flush(&telemetry).await;
    let spans = c.spans();
    let servers: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == 2)
        .collect();
    let mut names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["GET /block", "GET /fail"]);
    let failed = servers.iter().find(|s| s.name == "GET /fail").unwrap();
    assert_eq!(failed.status.as_ref().unwrap().code, 2, "status error");
    // The blocking poll is an event on the blocking middleware's span, with the route.
    let blocker = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "blocker" && s.events.iter().any(|e| e.name == "blocking"))
        .expect("the blocker's span with a blocking event");
    let event = blocker
        .events
        .iter()
        .find(|e| e.name == "blocking")
        .unwrap();
    assert_eq!(
        attr(&event.attributes, "http.route").as_deref(),
        Some("/block")
    );
    let ms: f64 = attr(&event.attributes, "callnext.poll_ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms >= 150.0, "{ms}");
    telemetry.shutdown(Duration::from_secs(5));
}

/// The ratio keeps about that share of new traces. (With ids from uuid's v4 generator, whose
/// fixed variant bits sit in the bytes the ratio reads, a ratio of 0.5 or less kept nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratio_keeps_that_share_of_new_traces() {
    let (endpoint, c) = collector().await;
    let telemetry = Telemetry::builder()
        .endpoint(endpoint)
        .sampling_ratio(0.25)
        .middlewares(MiddlewareSpans::Off)
        .build()
        .unwrap();
    let client = client(&telemetry);
    for _ in 0..800 {
        assert_eq!(client.get("/items/1").await.status(), 200);
    }
    flush(&telemetry).await;
    let kept = c.spans().len();
    // 800 draws at 0.25: 200 expected, standard deviation 12.2; the bounds are 6 of them away.
    assert!((126..=274).contains(&kept), "{kept} of 800 kept at 0.25");
    telemetry.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_instead_of_spans_over_http_json() {
    let (endpoint, c) = collector().await;
    let telemetry = Telemetry::builder()
        .endpoint(format!("{endpoint}/v1/traces"))
        .protocol(Protocol::HttpJson)
        .middlewares(MiddlewareSpans::Events)
        .build()
        .unwrap();
    let client = client(&telemetry);
    client.get("/items/3").await;
    flush(&telemetry).await;
    let spans = c.spans();
    assert_eq!(spans.len(), 1, "one span, no children");
    let server = &spans[0].1;
    let events: Vec<String> = server
        .events
        .iter()
        .filter(|e| e.name == "middleware")
        .map(|e| attr(&e.attributes, "callnext.middleware").unwrap())
        .collect();
    assert_eq!(events, ["request_id", "timing", "blocker", "app"]);
    telemetry.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_writes_the_trace_id_beside_the_request_id() {
    use callnext::middleware::access_log::{AccessLog, SharedWriter, Sink};
    let (endpoint, _c) = collector().await;
    let telemetry = Telemetry::builder().endpoint(endpoint).build().unwrap();
    let out = Arc::new(Mutex::new(Vec::<u8>::new()));
    let log = AccessLog::builder()
        .sink(Sink::Writer(SharedWriter(out.clone())))
        .build()
        .unwrap();
    let stack = Stack::new()
        .hook(SetRequestId::new())
        .hook(log.clone())
        .telemetry(telemetry.clone());
    let client = TestClient::new(stack.service(app()));
    let trace_id = client.get("/items/9").await.text();
    let handle = log.handle();
    assert!(
        tokio::task::spawn_blocking(move || handle.flush(Duration::from_secs(10)))
            .await
            .unwrap()
    );
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record["trace_id"], trace_id.as_str());
    assert!(record["request_id"].is_string());
    telemetry.shutdown(Duration::from_secs(5));
}

#[test]
fn the_configuration_table_turns_it_on_and_names_its_mistakes() {
    let stack = common::stack_from_config(
        "[telemetry]\nendpoint = \"http://127.0.0.1:4318\"\nsampling_ratio = 0.25\nmiddleware_spans = \"events\"\n",
    )
    .unwrap();
    assert!(stack.flush(Duration::from_secs(1)));
    let err = |text: &str| common::stack_from_config(text).unwrap_err();
    assert_eq!(
        err("[telemetry]\nendpoint = \"http://127.0.0.1:4318\"\nprotocol = \"grpc\"\n"),
        "app.toml:3: `telemetry.protocol`: expected `http/protobuf` or `http/json`, got `grpc`"
    );
    assert_eq!(
        err("[telemetry]\nendpoint = \"http://127.0.0.1:4318\"\nsampling_ratio = 2.0\n"),
        "app.toml:3: `telemetry.sampling_ratio`: invalid `sampling_ratio`: expected 0 to 1, got 2"
    );
    assert_eq!(
        err("[telemetry]\nendpoint = \"collector:4318\"\n"),
        "app.toml:2: `telemetry.endpoint`: invalid `endpoint`: expected an http:// or https:// URL, got `collector:4318`"
    );
    assert_eq!(
        err("[telemetry]\nendpoint = \"http://127.0.0.1:4318\"\ntrust_incoming = \"everyone\"\n"),
        "app.toml:3: `telemetry.trust_incoming`: expected `trusted_proxies`, `always` or `never`, got `everyone`"
    );
}
