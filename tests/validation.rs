//! Validation errors as FastAPI (pydantic v2) writes them: every invalid or missing field in
//! one 422, pydantic's types, messages and inputs, lax mode, bodies that are missing, `null`,
//! not objects or not JSON, and query parameters. Bodies compared exactly with FastAPI's.
//!
//! One difference is by design: within an object, issues come in the order serde meets them
//! (the fields present, by name, then the missing ones), where pydantic follows the order the
//! model declares its fields.

use axum::routing::{get, post};
use axum::Router;
use callnext::extract::{Json, Query};
use callnext::{Stack, TestClient};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Owner {
    name: String,
    age: u8,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "lowercase")]
enum Size {
    Small,
    Large,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Item {
    name: String,
    price: f64,
    tax: Option<f64>,
    quantity: i32,
    size: Option<Size>,
    owner: Option<Owner>,
    tags: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Strict {
    name: String,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Search {
    q: String,
    skip: u32,
    short: Option<bool>,
    tag: Option<Vec<String>>,
    price: Option<f64>,
}

fn client() -> TestClient<callnext::StackService> {
    let app = Router::new()
        .route(
            "/items",
            post(|Json(item): Json<Item>| async move { format!("{item:?}") }),
        )
        .route(
            "/strict",
            post(|Json(s): Json<Strict>| async move { s.name }),
        )
        .route(
            "/search",
            get(|Query(s): Query<Search>| async move { format!("{s:?}") }),
        )
        .route(
            "/flags/{on}",
            get(
                |callnext::extract::Path(on): callnext::extract::Path<bool>| async move {
                    on.to_string()
                },
            ),
        )
        .route(
            "/pairs/{n}/{on}",
            get(
                |callnext::extract::Path((n, on)): callnext::extract::Path<(u8, bool)>| async move {
                    format!("{n} {on}")
                },
            ),
        );
    TestClient::new(Stack::new().service(app))
}

async fn post_json(body: &str) -> (u16, Value) {
    let res = client()
        .post("/items")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .await;
    let status = res.status().as_u16();
    (
        status,
        serde_json::from_str(&res.text()).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_invalid_and_missing_field_is_in_one_422() {
    let (status, body) = post_json(r#"{"name": 5, "price": "abc", "tax": "1.5"}"#).await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"detail": [
            {"type": "string_type", "loc": ["body", "name"], "msg": "Input should be a valid string", "input": 5},
            {"type": "float_parsing", "loc": ["body", "price"], "msg": "Input should be a valid number, unable to parse string as a number", "input": "abc"},
            {"type": "missing", "loc": ["body", "quantity"], "msg": "Field required", "input": {"name": 5, "price": "abc", "tax": "1.5"}}
        ]})
    );
}

#[tokio::test]
async fn lax_mode_accepts_what_pydantic_accepts() {
    let (status, _) = post_json(r#"{"name": "pen", "price": "50.5", "quantity": "42"}"#).await;
    assert_eq!(status, 200);
    let res = client()
        .post("/items")
        .header("content-type", "application/json")
        .body(r#"{"name": "pen", "price": 2, "quantity": 4.0}"#)
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().contains("quantity: 4"), "{}", res.text());
}

#[tokio::test]
async fn numbers_types_and_nested_models() {
    let (_, body) = post_json(
        r#"{"name": "pen", "price": true, "quantity": 4.5, "owner": {"age": "old"}, "tags": "a"}"#,
    )
    .await;
    assert_eq!(
        body,
        json!({"detail": [
            {"type": "int_parsing", "loc": ["body", "owner", "age"], "msg": "Input should be a valid integer, unable to parse string as an integer", "input": "old"},
            {"type": "missing", "loc": ["body", "owner", "name"], "msg": "Field required", "input": {"age": "old"}},
            {"type": "float_type", "loc": ["body", "price"], "msg": "Input should be a valid number", "input": true},
            {"type": "int_from_float", "loc": ["body", "quantity"], "msg": "Input should be a valid integer, got a number with a fractional part", "input": 4.5},
            {"type": "list_type", "loc": ["body", "tags"], "msg": "Input should be a valid list", "input": "a"}
        ]})
    );
}

#[tokio::test]
async fn enums_list_their_values() {
    let (_, body) =
        post_json(r#"{"name": "pen", "price": 1, "quantity": 1, "size": "huge"}"#).await;
    assert_eq!(
        body,
        json!({"detail": [
            {"type": "enum", "loc": ["body", "size"], "msg": "Input should be 'small' or 'large'", "input": "huge", "ctx": {"expected": "'small' or 'large'"}}
        ]})
    );
}

#[tokio::test]
async fn bodies_that_are_missing_null_or_not_objects() {
    for body in ["", "null", "  "] {
        let (status, detail) = post_json(body).await;
        assert_eq!(status, 422, "{body:?}");
        assert_eq!(
            detail,
            json!({"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": null}]}),
            "{body:?}"
        );
    }
    let (_, detail) = post_json("[1, 2]").await;
    assert_eq!(
        detail,
        json!({"detail": [{"type": "model_attributes_type", "loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from", "input": [1, 2]}]})
    );
    let (_, detail) = post_json(r#"{"name": "pen",}"#).await;
    assert_eq!(detail["detail"][0]["type"], "json_invalid");
    assert_eq!(detail["detail"][0]["loc"], json!(["body", 15]));
    assert_eq!(detail["detail"][0]["msg"], "JSON decode error");
    assert_eq!(detail["detail"][0]["input"], json!({}));
}

#[tokio::test]
async fn extra_fields_when_forbidden() {
    let res = client()
        .post("/strict")
        .header("content-type", "application/json")
        .body(r#"{"name": "pen", "colour": "red"}"#)
        .await;
    assert_eq!(
        res.text(),
        r#"{"detail":[{"type":"extra_forbidden","loc":["body","colour"],"msg":"Extra inputs are not permitted","input":"red"}]}"#
    );
}

#[tokio::test]
async fn query_parameters() {
    let client = client();
    let res = client
        .get("/search?q=pen&skip=1&short=yes&tag=a&tag=b&price=2.5")
        .await;
    assert_eq!(res.status(), 200, "{}", res.text());
    assert_eq!(
        res.text(),
        r#"Search { q: "pen", skip: 1, short: Some(true), tag: Some(["a", "b"]), price: Some(2.5) }"#
    );
    let res = client.get("/search?q=pen&skip=0&short=off&tag=a").await;
    assert!(
        res.text()
            .contains(r#"short: Some(false), tag: Some(["a"])"#),
        "{}",
        res.text()
    );

    // FastAPI's docs: a required query parameter left out.
    let res = client.get("/search?skip=1").await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.text(),
        r#"{"detail":[{"type":"missing","loc":["query","q"],"msg":"Field required","input":null}]}"#
    );
    let res = client
        .get("/search?q=pen&skip=-1&short=maybe&price=cheap")
        .await;
    assert_eq!(
        res.json::<Value>(),
        json!({"detail": [
            {"type": "float_parsing", "loc": ["query", "price"], "msg": "Input should be a valid number, unable to parse string as a number", "input": "cheap"},
            {"type": "bool_parsing", "loc": ["query", "short"], "msg": "Input should be a valid boolean, unable to interpret input", "input": "maybe"},
            {"type": "greater_than_equal", "loc": ["query", "skip"], "msg": "Input should be greater than or equal to 0", "input": "-1", "ctx": {"ge": 0}}
        ]})
    );
    let res = client.get("/search?q=pen&skip=x").await;
    assert_eq!(
        res.text(),
        r#"{"detail":[{"type":"int_parsing","loc":["query","skip"],"msg":"Input should be a valid integer, unable to parse string as an integer","input":"x"}]}"#
    );
}

#[tokio::test]
async fn lax_booleans_in_the_path() {
    let client = client();
    for (text, value) in [
        ("yes", "true"),
        ("on", "true"),
        ("1", "true"),
        ("off", "false"),
        ("False", "false"),
    ] {
        assert_eq!(
            client.get(&format!("/flags/{text}")).await.text(),
            value,
            "{text}"
        );
    }
    assert_eq!(client.get("/pairs/7/no").await.text(), "7 false");
    assert_eq!(
        client.get("/flags/maybe").await.text(),
        r#"{"detail":[{"type":"bool_parsing","loc":["path","on"],"msg":"Input should be a valid boolean, unable to interpret input","input":"maybe"}]}"#
    );
}

#[tokio::test]
async fn an_optional_body_is_none_when_absent_and_a_422_when_wrong() {
    #[derive(serde::Deserialize)]
    struct Item {
        name: String,
    }
    async fn create(item: Option<callnext::extract::Json<Item>>) -> String {
        item.map_or_else(|| "none".to_owned(), |item| item.0.name)
    }
    let app = axum::Router::new().route("/", axum::routing::post(create));
    let client = callnext::TestClient::new(callnext::Stack::new().service(app));
    assert_eq!(client.post("/").await.text(), "none");
    let none = client
        .post("/")
        .header("content-type", "application/json")
        .body(" null ")
        .send()
        .await;
    assert_eq!(none.text(), "none");
    let pen = client
        .post("/")
        .json(&serde_json::json!({"name": "pen"}))
        .await;
    assert_eq!(pen.text(), "pen");
    for (content_type, body, kind) in [
        ("application/json", "{\"name\": 1}", "string_type"),
        ("application/json", "{\"name\": ", "json_invalid"),
        ("text/plain", "pen", "model_attributes_type"),
    ] {
        let res = client
            .post("/")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        assert_eq!(res.status(), 422, "{body}");
        let detail = res.json::<serde_json::Value>();
        assert_eq!(detail["detail"][0]["type"], kind, "{detail}");
    }
}
