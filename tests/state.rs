//! Typed values flow from middleware to handler and from handler back to middleware.

use axum::{routing::get, Extension, Router};
use callnext::{Next, Request, Response, Stack, TestClient};
use http::HeaderValue;

#[derive(Clone, Debug, PartialEq)]
struct User {
    name: String,
}

#[derive(Clone, Debug, PartialEq)]
struct CacheHint {
    seconds: u32,
}

async fn authenticate(mut req: Request, next: Next<'_>) -> Response {
    let name = req
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    req.extensions_mut().insert(User { name });
    next.run(req).await
}

async fn cache_control(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    if let Some(hint) = res.extensions().get::<CacheHint>().cloned() {
        let value = format!("max-age={}", hint.seconds);
        res.headers_mut()
            .insert("cache-control", HeaderValue::try_from(value).unwrap());
    }
    res
}

async fn whoami(Extension(user): Extension<User>) -> (Extension<CacheHint>, String) {
    (
        Extension(CacheHint { seconds: 60 }),
        format!("hello {}", user.name),
    )
}

#[tokio::test]
async fn middleware_to_handler_and_handler_to_middleware() {
    let app = Router::new().route("/", get(whoami));
    let client = TestClient::new(
        Stack::new()
            .func(cache_control)
            .func(authenticate)
            .service(app),
    );

    let req = http::Request::get("/")
        .header("x-user", "ada")
        .body(Default::default())
        .unwrap();
    let res = client.request(req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text(), "hello ada");
    assert_eq!(res.header("cache-control"), Some("max-age=60"));
    assert_eq!(
        res.extensions().get::<CacheHint>(),
        Some(&CacheHint { seconds: 60 })
    );

    assert_eq!(client.get("/").await.text(), "hello anonymous");
}
