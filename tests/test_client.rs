//! The in-process test client: headers, bearer tokens, JSON both ways, streamed bodies.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use callnext::{HttpError, Next, Request, Response, Stack, TestClient};

async fn require_bearer(req: Request, next: Next<'_>) -> Result<Response, HttpError> {
    match req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        Some("Bearer s3cret") => Ok(next.run(req).await),
        _ => Err(HttpError::unauthorized("Not authenticated")),
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Item {
    name: String,
    price: f64,
}

fn app() -> Router {
    Router::new()
        .route(
            "/items",
            post(|Json(item): Json<Item>| async move { Json(item) }),
        )
        .route(
            "/echo-header",
            get(|headers: http::HeaderMap| async move {
                headers
                    .get_all("x-tag")
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        )
        .route(
            "/events",
            get(|| async {
                // An endless stream, one event every 10 ms.
                let ticks = futures_util::stream::unfold(0u64, |n| async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Some((
                        Ok::<_, Infallible>(Event::default().data(n.to_string())),
                        n + 1,
                    ))
                });
                Sse::new(ticks)
            }),
        )
}

fn client() -> TestClient<callnext::StackService> {
    TestClient::new(Stack::new().func(require_bearer).service(app()))
}

#[tokio::test]
async fn bearer_tokens_headers_and_typed_json() {
    let client = client();
    let res = client.get("/echo-header").await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<serde_json::Value>()["detail"],
        "Not authenticated"
    );

    let res = client
        .get("/echo-header")
        .bearer("s3cret")
        .header("x-tag", "a")
        .header("x-tag", "b")
        .await;
    assert_eq!(res.text(), "a,b");

    let item = Item {
        name: "pen".into(),
        price: 1.5,
    };
    let res = client.post("/items").bearer("s3cret").json(&item).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.json::<Item>(), item);
}

#[tokio::test(start_paused = true)]
async fn an_endless_stream_is_read_chunk_by_chunk() {
    let mut stream = client().get("/events").bearer("s3cret").stream().await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    for n in 0..3 {
        let chunk = stream.next_chunk().await.expect("the stream goes on");
        assert_eq!(chunk, format!("data: {n}\n\n"));
    }
    // Dropping the stream ends the test: nothing waits for the end of an endless body.
}

/// The cookie jar: a session login, a request that reads it, a logout that clears the cookie;
/// a request with a `Cookie` header of its own sends that one instead.
#[tokio::test]
async fn the_cookie_jar_carries_a_session_from_login_to_logout() {
    use callnext::middleware::session::{Session, Sessions};
    let app = axum::Router::new()
        .route(
            "/login",
            axum::routing::post(|s: Session| async move {
                s.insert("user", "ann").await?;
                s.cycle_id().await?;
                Ok::<_, callnext::HttpError>("in")
            }),
        )
        .route(
            "/me",
            axum::routing::get(|s: Session| async move {
                let user: Option<String> = s.get("user").await?;
                Ok::<_, callnext::HttpError>(user.unwrap_or_else(|| "nobody".to_owned()))
            }),
        )
        .route(
            "/logout",
            axum::routing::post(|s: Session| async move {
                s.destroy().await?;
                Ok::<_, callnext::HttpError>("out")
            }),
        );
    let sessions = Sessions::builder().secret([2u8; 64]).build().unwrap();
    let client =
        callnext::TestClient::new(callnext::Stack::new().hook(sessions).service(app)).cookies();
    assert_eq!(client.get("/me").await.text(), "nobody");
    assert_eq!(client.post("/login").send().await.status(), 200);
    let id = client.cookie("id").expect("the login's cookie is kept");
    assert_eq!(client.get("/me").await.text(), "ann");
    // A clone shares the jar; an explicit header wins over it.
    assert_eq!(client.clone().get("/me").await.text(), "ann");
    assert_eq!(
        client.get("/me").header("cookie", "id=other").await.text(),
        "nobody"
    );
    assert_eq!(client.post("/logout").send().await.status(), 200);
    assert_eq!(client.cookie("id"), None, "the logout expired the cookie");
    assert_eq!(client.get("/me").await.text(), "nobody");
    // The old cookie, sent by hand, is a logged-out session too.
    assert_eq!(
        client
            .get("/me")
            .header("cookie", format!("id={id}"))
            .await
            .text(),
        "nobody"
    );
}
