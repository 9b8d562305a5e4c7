//! The seed application behaves like the FastAPI original.

use callnext::TestClient;
use callnext_server::seed::{self, SeedConfig};

fn client(simulated_io: bool) -> TestClient<callnext::StackService> {
    TestClient::new(seed::app(&SeedConfig {
        simulated_io,
        some_option: "custom_config_value".into(),
    }))
}

fn assert_seed_headers(res: &callnext::TestResponse) {
    assert_eq!(
        res.header("x-custom-middleware-header"),
        Some("Hello from Async Middleware!")
    );
    assert_eq!(
        res.header("x-another-middleware"),
        Some("Processed by class-based middleware")
    );
    let secs = res.header("x-process-time").expect("x-process-time");
    let (whole, fraction) = secs.split_once('.').expect("a decimal number of seconds");
    assert!(whole.bytes().all(|b| b.is_ascii_digit()), "{secs}");
    assert_eq!(fraction.len(), 9, "nanosecond precision: {secs}");
}

#[tokio::test]
async fn root_after_simulated_io() {
    let res = client(true).get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text(), r#"{"message":"Hello World"}"#);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_seed_headers(&res);
    // 10 ms + 100 ms + 5 ms of awaited sleeps lie inside the timing middleware.
    let secs: f64 = res.header("x-process-time").unwrap().parse().unwrap();
    assert!(secs >= 0.115, "process time {secs} should cover the sleeps");
}

#[tokio::test]
async fn items() {
    let client = client(false);
    let res = client.get("/items/1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text(), r#"{"item_id":1}"#);
    assert_seed_headers(&res);

    let res = client.get("/items/-5").await;
    assert_eq!(res.text(), r#"{"item_id":-5}"#);

    let res = client.get("/items/99").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.text(), r#"{"detail":"Item 99 not found"}"#);
    assert_seed_headers(&res);
}

#[tokio::test]
async fn invalid_item_ids_are_fastapi_422s() {
    let client = client(false);
    for input in ["abc", "1.5"] {
        let res = client.get(&format!("/items/{input}")).await;
        assert_eq!(res.status(), 422);
        assert_eq!(
            res.text(),
            format!(
                r#"{{"detail":[{{"type":"int_parsing","loc":["path","item_id"],"msg":"Input should be a valid integer, unable to parse string as an integer","input":"{input}"}}]}}"#
            )
        );
        assert_seed_headers(&res);
    }
    let res = client.get("/items/99999999999999999999").await;
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json();
    assert_eq!(body["detail"][0]["type"], "int_parsing_size");
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!(["path", "item_id"])
    );
    assert_eq!(
        body["detail"][0]["msg"],
        "Input should be an integer between -9223372036854775808 and 9223372036854775807"
    );
}

#[tokio::test]
async fn router_404_and_405_are_json_and_pass_the_stack() {
    let client = client(false);
    let res = client.get("/nope").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.text(), r#"{"detail":"Not Found"}"#);
    assert_seed_headers(&res);

    let res = client.post("/").await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.text(), r#"{"detail":"Method Not Allowed"}"#);
    assert_eq!(res.header("allow"), Some("GET,HEAD"));
    assert_seed_headers(&res);
}

#[test]
fn seed_stack_runs_in_fastapi_order() {
    let stack = seed::stack(&SeedConfig::default());
    assert_eq!(
        stack.to_string(),
        "0 another (struct)\n1 timing (function)\n"
    );
}
