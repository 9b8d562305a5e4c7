//! The rules batteries share, attacked through real sockets: only a Fetch-standard preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) passes auth and the rate
//! limiter uncounted; path rules cover whole segments of the path routing sees.

mod common;

use std::time::Duration;

use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use callnext::middleware::auth::{Auth, SqlKeyStore};
use callnext::middleware::rate_limit::RateLimit;
use callnext::middleware::Cors;
use callnext::serve::Server;
use callnext::Stack;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn keys(name: &str) -> SqlKeyStore {
    let dir = std::env::temp_dir().join(format!("callnext-family-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&path);
    SqlKeyStore::open(&format!("sqlite://{}", path.display())).unwrap()
}

async fn options(addr: std::net::SocketAddr, path: &str, origin: bool) -> (u16, String) {
    options_over(addr, path, origin, false).await
}

/// The same over HTTP/1.1, or as a stream of an HTTP/2 connection (h2c).
async fn options_over(
    addr: std::net::SocketAddr,
    path: &str,
    origin: bool,
    http2: bool,
) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http::<Empty<Bytes>>();
    let mut req = http::Request::builder()
        .method("OPTIONS")
        .uri(format!("http://{addr}{path}"))
        .header("access-control-request-method", "GET");
    if origin {
        req = req.header("origin", "https://app.example");
    }
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(req.body(Empty::new()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn app() -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route("/open", any(|| async { "reached the app" }))
}

#[tokio::test]
async fn an_options_without_origin_is_authenticated_and_counted_with_or_without_cors() {
    for with_cors in [false, true] {
        let auth = Auth::builder()
            .api_keys(keys(&format!("preflight-{with_cors}")))
            .build()
            .unwrap();
        let limit = RateLimit::builder().limit("2/minute").build().unwrap();
        let mut stack = Stack::new();
        if with_cors {
            let cors = Cors::builder()
                .allow_origins(["https://app.example"])
                .build()
                .unwrap();
            stack = stack.hook(cors);
        }
        let stack = stack.hook(limit).hook(auth);
        let running = common::spawn(Server::new(), stack.service(app())).await;

        // Not a preflight (no Origin): authenticated, so 401, never the app's `any()` route.
        let (status, body) = options(running.addr, "/open", false).await;
        assert_eq!(status, 401, "cors {with_cors}: {body}");
        assert!(!body.contains("reached the app"));
        let (status, _) = options_over(running.addr, "/items/1", false, true).await;
        assert_eq!(status, 401, "cors {with_cors}, HTTP/2");
        // And counted: the third is over the limit of two.
        let (status, body) = options(running.addr, "/open", false).await;
        assert_eq!(status, 429, "cors {with_cors}: {body}");

        // A real preflight is not counted: CORS answers it, or without CORS it passes.
        let (status, body) = options(running.addr, "/open", true).await;
        if with_cors {
            assert_eq!(status, 200, "{body}");
            assert!(!body.contains("reached the app"));
        } else {
            assert_eq!(body, "reached the app");
        }
        running.stop().await;
    }
}

#[tokio::test]
async fn path_rules_cover_whole_segments_of_the_routed_path() {
    let auth = Auth::builder()
        .api_keys(keys("paths"))
        .public_paths(["/items/*"])
        .build()
        .unwrap();
    let with_secret = app().route("/itemsecret", get(|| async { "secret" }));
    let running = common::spawn(Server::new(), Stack::new().hook(auth).service(with_secret)).await;
    assert_eq!(common::get(&running.url("/items/1")).await.status, 200);
    assert_eq!(common::get(&running.url("/itemsecret")).await.status, 401);
    // Not decoded: `/%69tems/1` is not `/items/1` to routing either.
    assert_eq!(common::get(&running.url("/%69tems/1")).await.status, 401);
    running.stop().await;

    // A limiter's paths are prefixes of whole segments too.
    let limit = RateLimit::builder()
        .limit("1/minute")
        .paths(["/items/"])
        .build()
        .unwrap();
    let running = common::spawn(Server::new(), Stack::new().hook(limit).service(app())).await;
    assert_eq!(common::get(&running.url("/items/1")).await.status, 200);
    assert_eq!(common::get(&running.url("/items/2")).await.status, 429);
    assert_eq!(common::get(&running.url("/open")).await.status, 200);
    assert_eq!(common::get(&running.url("/open")).await.status, 200);
    running.stop().await;

    let err = RateLimit::builder()
        .limit("1/minute")
        .paths(["api"])
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `paths`: `api` does not start with `/`"
    );
}
