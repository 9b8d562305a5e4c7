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
