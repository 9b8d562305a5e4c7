//! The request id battery with the rest of the stack: on panics, on later entries' early
//! answers, in the request's span, never echoing an invalid id, and from the configuration.

mod common;

use axum::{routing::get, Router};
use callnext::config::{Config, Registry};
use callnext::middleware::{RequestId, SetRequestId};
use callnext::{Flow, HttpError, Stack, TestClient};

fn app() -> Router {
    Router::new()
        .route("/", get(|id: RequestId| async move { id.to_string() }))
        .route(
            "/panic",
            get(|| async {
                panic!("boom");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/logged",
            get(|| async {
                tracing::info!("handler says hello from battery_request_id");
                "ok"
            }),
        )
}

#[tokio::test]
async fn the_id_is_on_panics_and_on_later_entries_early_answers() {
    let client =
        TestClient::new(common::limited(Stack::new().hook(SetRequestId::new())).service(app()));

    let res = client.get("/panic").header("x-request-id", "req-1").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.header("x-request-id"), Some("req-1"));
    assert_eq!(
        res.text(),
        r#"{"detail":"Internal Server Error","request_id":"req-1"}"#
    );

    let res = client.get("/limited").header("x-request-id", "req-2").await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.header("x-request-id"), Some("req-2"));
    assert_eq!(
        res.text(),
        r#"{"detail":"Too Many Requests","request_id":"req-2"}"#
    );

    // Handlers' own bodies are left alone.
    let res = client.get("/").header("x-request-id", "req-3").await;
    assert_eq!(res.text(), "req-3");
}

#[tokio::test]
async fn the_id_is_in_the_span_and_an_invalid_one_is_never_echoed_or_logged() {
    let logs = common::Logs::capture();
    let client = TestClient::new(Stack::new().hook(SetRequestId::new()).service(app()));
    let res = client
        .get("/logged")
        .header("x-request-id", "span-id-42")
        .await;
    assert_eq!(res.status(), 200);
    let lines = logs.lines_with("handler says hello from battery_request_id");
    assert!(
        lines.iter().any(|l| l.contains("request_id=span-id-42")),
        "{lines:?}"
    );

    let evil = "<script>alert(1)</script>";
    let res = client.get("/logged").header("x-request-id", evil).await;
    let id = res.header("x-request-id").unwrap().to_owned();
    assert_ne!(id, evil);
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert!(!logs.text().contains(evil));

    let long = "a".repeat(129);
    let res = client.get("/").header("x-request-id", long.as_str()).await;
    assert_ne!(res.text(), long);
}

#[tokio::test]
async fn fresh_ids_are_distinct_uuid_v7s() {
    let client = TestClient::new(Stack::new().hook(SetRequestId::new()).service(app()));
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(client.get("/").await.text());
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    // Time-ordered: sorted as text is the order they were made.
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
}

#[tokio::test]
async fn from_the_configuration_file() {
    let text = "[middleware.request_id]\nheader = \"x-trace-id\"\ninvalid = \"reject\"\n";
    let config = Config::parse(text, "app.toml", &[]).unwrap();
    let stack = config.stack(&Registry::new()).unwrap();
    assert_eq!(stack.describe()[0].name, "request_id");
    let client = TestClient::new(stack.service(app()));
    let res = client.get("/").header("x-trace-id", "bad id").await;
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .starts_with(r#"{"detail":"Invalid X-Trace-Id header","request_id":""#));
    let res = client.get("/").header("x-trace-id", "good").await;
    assert_eq!(res.text(), "good");

    let err =
        common::stack_from_config("[middleware.request_id]\ninvalid = \"drop\"\n").unwrap_err();
    assert_eq!(
        err,
        "app.toml:2: `middleware.request_id.invalid`: unknown variant `drop`, expected `replace` or `reject`"
    );
    let err =
        common::stack_from_config("[middleware.request_id]\nheader = \"x trace\"\n").unwrap_err();
    assert_eq!(
        err,
        "app.toml:2: `middleware.request_id.header`: \"x trace\" is not a header name"
    );
}

#[tokio::test]
async fn a_hook_answering_early_with_flow_respond_gets_the_id_too() {
    struct Deny;
    impl callnext::Hook for Deny {
        type State = ();
        fn on_request<'a>(&'a self, _req: &'a mut callnext::Request) -> Flow<'a> {
            Flow::respond(HttpError::unauthorized("Not authenticated"))
        }
    }
    let stack = Stack::new().hook(SetRequestId::new()).hook(Deny);
    let res = TestClient::new(stack.service(app()))
        .get("/")
        .header("x-request-id", "r9")
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.text(),
        r#"{"detail":"Not authenticated","request_id":"r9"}"#
    );
}

/// Turned off, error bodies stay FastAPI's exactly; the id is still on the response.
#[tokio::test]
async fn error_bodies_can_stay_fastapis() {
    for stack in [
        Stack::new().hook(SetRequestId::new().in_error_body(false)),
        common::stack_from_config("[middleware.request_id]\nerror_body = false\n").unwrap(),
    ] {
        let client = TestClient::new(stack.service(app()));
        let res = client.get("/nope").header("x-request-id", "req-9").await;
        assert_eq!(res.status(), 404);
        assert_eq!(res.header("x-request-id"), Some("req-9"));
        assert_eq!(res.text(), r#"{"detail":"Not Found"}"#);
    }
}
