//! Exception handlers set on a stack render every error raised inside it, where it becomes a
//! response: problem+json for HttpErrors (from handlers, hooks and the router's 404/405), a
//! company envelope for 422s, and a handled 500; middlewares outside see the rendered answer.

use axum::response::IntoResponse;
use axum::{routing::get, Router};
use callnext::extract::{Path, ValidationError};
use callnext::{HttpError, Next, Panicked, Request, Response, Stack, TestClient};
use http::StatusCode;

fn app() -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move {
                if id == 99 {
                    return Err(
                        HttpError::not_found("Item 99 not found").with_header("x-hint", "try 1")
                    );
                }
                Ok(id.to_string())
            }),
        )
        .route(
            "/panic",
            get(|| async {
                panic!("secret internals");
                #[allow(unreachable_code)]
                ""
            }),
        )
}

fn problem(err: &HttpError) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "status": err.status().as_u16(),
        "title": err.status().canonical_reason(),
        "detail": err.detail(),
    });
    let mut res = (err.status(), axum::Json(body)).into_response();
    res.headers_mut()
        .insert("content-type", "application/problem+json".parse().unwrap());
    res.headers_mut().extend(err.headers().clone());
    res
}

/// An outer middleware that records the content type it saw.
async fn observer(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    let seen = res
        .headers()
        .get("content-type")
        .cloned()
        .unwrap_or_else(|| "none".parse().unwrap());
    res.headers_mut().insert("x-seen", seen);
    res
}

fn stack() -> Stack {
    Stack::new()
        .func(observer)
        .on_request("auth", |req: &mut Request| {
            if req.uri().path() == "/secret" {
                Err(HttpError::unauthorized("Not authenticated")
                    .with_header("www-authenticate", "Bearer"))
            } else {
                Ok(())
            }
        })
        .on_http_error(problem)
        .on_validation_error(|err: &ValidationError| {
            let detail =
                serde_json::to_value(err.clone().into_response().status().as_u16()).unwrap();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(
                    serde_json::json!({"error": {"code": "invalid_request", "status": detail}}),
                ),
            )
                .into_response()
        })
        .on_panic(|p: &Panicked| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({"error": {"code": "internal", "where": p.entry()}})),
            )
                .into_response()
        })
}

#[tokio::test]
async fn http_errors_from_anywhere_become_problem_documents() {
    let client = TestClient::new(stack().service(app()));
    let res = client.get("/items/99").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert_eq!(res.header("x-hint"), Some("try 1"));
    assert_eq!(res.header("x-seen"), Some("application/problem+json"));
    assert_eq!(
        res.json::<serde_json::Value>(),
        serde_json::json!({"type": "about:blank", "status": 404, "title": "Not Found", "detail": "Item 99 not found"})
    );
    // A hook's early answer, and the router's own 404 and 405.
    let res = client.get("/secret").await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    assert_eq!(res.json::<serde_json::Value>()["title"], "Unauthorized");
    let res = client.get("/nowhere").await;
    assert_eq!(res.json::<serde_json::Value>()["detail"], "Not Found");
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let res = client.post("/items/1").await;
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.json::<serde_json::Value>()["title"],
        "Method Not Allowed"
    );
    // The error is still there for middlewares to catch.
    assert_eq!(res.extensions().get::<HttpError>().unwrap().status(), 405);
}

#[tokio::test]
async fn validation_errors_and_panics_have_their_own_handlers() {
    let client = TestClient::new(stack().service(app()));
    let res = client.get("/items/abc").await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.text(),
        r#"{"error":{"code":"invalid_request","status":422}}"#
    );
    assert!(res.extensions().get::<ValidationError>().is_some());
    let res = client.get("/panic").await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.text(), r#"{"error":{"code":"internal","where":"app"}}"#);
    assert!(!res.text().contains("secret internals"));

    // Without handlers, today's JSON stays.
    let plain = TestClient::new(Stack::new().service(app()));
    assert_eq!(
        plain.get("/items/99").await.text(),
        r#"{"detail":"Item 99 not found"}"#
    );
}
