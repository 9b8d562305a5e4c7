//! Constraints declared on extracted types (`validator`'s derive) answered as pydantic's
//! errors, compared exactly: bounds on numbers, lengths of strings and lists, in a body, a
//! query and a path, nested models.

use axum::routing::{get, post};
use axum::Router;
use callnext::extract::{Json, Path, Query, Valid};
use callnext::{Stack, TestClient};
use serde::Deserialize;
use serde_json::{json, Value};
use validator::Validate;

#[derive(Deserialize, Validate)]
#[allow(dead_code)]
struct Owner {
    #[validate(length(min = 2))]
    name: String,
}

#[derive(Deserialize, Validate)]
#[allow(dead_code)]
struct Item {
    #[validate(length(min = 1, max = 5))]
    name: String,
    #[validate(range(exclusive_min = 0))]
    price: i64,
    #[validate(range(min = 1, max = 10))]
    quantity: u32,
    #[validate(range(exclusive_max = 1.0))]
    discount: f64,
    #[validate(length(max = 2))]
    tags: Vec<String>,
    #[validate(nested)]
    owner: Owner,
}

#[derive(Deserialize, Validate)]
#[allow(dead_code)]
struct Search {
    #[validate(length(max = 10))]
    q: String,
}

#[derive(Deserialize, Validate)]
#[allow(dead_code)]
struct ItemId {
    #[validate(range(min = 1))]
    item_id: i64,
}

fn client() -> TestClient<callnext::StackService> {
    let app = Router::new()
        .route(
            "/items",
            post(|Valid(Json(_)): Valid<Json<Item>>| async { "ok" }),
        )
        .route(
            "/search",
            get(|Valid(Query(_)): Valid<Query<Search>>| async { "ok" }),
        )
        .route(
            "/items/{item_id}",
            get(|Valid(Path(_)): Valid<Path<ItemId>>| async { "ok" }),
        );
    TestClient::new(Stack::new().service(app))
}

#[tokio::test]
async fn every_broken_constraint_in_one_422() {
    let res = client()
        .post("/items")
        .json(&json!({
            "name": "fountain pen",
            "price": 0,
            "quantity": 11,
            "discount": 1.0,
            "tags": ["a", "b", "c"],
            "owner": {"name": "x"}
        }))
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>(),
        json!({"detail": [
            {"type": "less_than", "loc": ["body", "discount"], "msg": "Input should be less than 1.0", "input": 1.0, "ctx": {"lt": 1.0}},
            {"type": "string_too_long", "loc": ["body", "name"], "msg": "String should have at most 5 characters", "input": "fountain pen", "ctx": {"max_length": 5}},
            {"type": "string_too_short", "loc": ["body", "owner", "name"], "msg": "String should have at least 2 characters", "input": "x", "ctx": {"min_length": 2}},
            {"type": "greater_than", "loc": ["body", "price"], "msg": "Input should be greater than 0", "input": 0, "ctx": {"gt": 0}},
            {"type": "less_than_equal", "loc": ["body", "quantity"], "msg": "Input should be less than or equal to 10", "input": 11, "ctx": {"le": 10}},
            {"type": "too_long", "loc": ["body", "tags"], "msg": "List should have at most 2 items after validation, not 3", "input": ["a", "b", "c"], "ctx": {"field_type": "List", "max_length": 2, "actual_length": 3}}
        ]})
    );
    let ok = client()
        .post("/items")
        .json(&json!({"name": "pen", "price": 1, "quantity": 1, "discount": 0.5, "tags": [], "owner": {"name": "ann"}}))
        .await;
    assert_eq!(ok.status(), 200, "{}", ok.text());
}

#[tokio::test]
async fn query_and_path_constraints() {
    // FastAPI's docs: `q: str = Query(max_length=10)`.
    let res = client().get("/search?q=fountainpens").await;
    assert_eq!(
        res.text(),
        r#"{"detail":[{"type":"string_too_long","loc":["query","q"],"msg":"String should have at most 10 characters","input":"fountainpens","ctx":{"max_length":10}}]}"#
    );
    // `item_id: int = Path(ge=1)`.
    let res = client().get("/items/0").await;
    assert_eq!(
        res.text(),
        r#"{"detail":[{"type":"greater_than_equal","loc":["path","item_id"],"msg":"Input should be greater than or equal to 1","input":"0","ctx":{"ge":1}}]}"#
    );
    assert_eq!(client().get("/items/3").await.text(), "ok");
    // A type error is reported as such, before any constraint.
    let res = client().get("/items/x").await;
    assert_eq!(res.json::<Value>()["detail"][0]["type"], "int_parsing");
}

static FIXED: callnext::extract::Pattern = callnext::extract::Pattern::new("^fixedquery$");

fn fixed(q: &str) -> Result<(), validator::ValidationError> {
    FIXED.check(q)
}

/// FastAPI's tutorial `q: str | None = Query(default=None, min_length=3, max_length=50,
/// pattern="^fixedquery$")`, and its test's requests and answers.
#[derive(Deserialize, Validate)]
struct FixedQuery {
    #[validate(length(min = 3, max = 50), custom(function = "fixed"))]
    q: Option<String>,
}

#[tokio::test]
async fn a_query_pattern_is_reported_as_fastapi_does() {
    let app = Router::new().route(
        "/items/",
        get(|Valid(Query(f)): Valid<Query<FixedQuery>>| async move {
            let mut body = json!({"items": [{"item_id": "Foo"}, {"item_id": "Bar"}]});
            if let Some(q) = f.q {
                body["q"] = json!(q);
            }
            axum::Json(body)
        }),
    );
    let client = TestClient::new(Stack::new().service(app));
    let res = client.get("/items/").await;
    assert_eq!(res.status(), 200);
    let res = client.get("/items/?q=fixedquery").await;
    assert_eq!(res.json::<Value>()["q"], "fixedquery");
    let res = client.get("/items/?q=nonregexquery").await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>(),
        json!({"detail": [{
            "type": "string_pattern_mismatch",
            "loc": ["query", "q"],
            "msg": "String should match pattern '^fixedquery$'",
            "input": "nonregexquery",
            "ctx": {"pattern": "^fixedquery$"}
        }]})
    );
}
