//! run with: cargo run --example axum_app   (then: curl -i -H 'x-user: ada' localhost:3000/me)
//!
//! A stack inside an existing axum application, served by `axum::serve`: a middleware hands the
//! user to the handler (FastAPI's `request.state`), the handler hands a cache hint back to the
//! middleware, and the peer address is axum's `ConnectInfo`.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::{routing::get, Extension, Router};
use callnext::{HttpError, Next, Request, Response, Stack};

#[derive(Clone)]
struct User(String);

#[derive(Clone)]
struct CacheFor(u32);

/// Puts the user on the request for the handler; reads the handler's hint from the response.
async fn users(mut req: Request, next: Next<'_>) -> Result<Response, HttpError> {
    let name = req
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| HttpError::unauthorized("Missing x-user"))?
        .to_owned();
    req.extensions_mut().insert(User(name));
    let mut res = next.run(req).await;
    if let Some(CacheFor(seconds)) = res.extensions().get::<CacheFor>().cloned() {
        let value = format!("private, max-age={seconds}");
        res.headers_mut()
            .insert("cache-control", value.parse().unwrap());
    }
    Ok(res)
}

async fn me(
    Extension(User(name)): Extension<User>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> (Extension<CacheFor>, String) {
    (Extension(CacheFor(60)), format!("{name} from {peer}\n"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let stack = Stack::new()
        .on_response("powered_by", |res| {
            res.headers_mut()
                .insert("x-powered-by", "callnext".parse().unwrap());
        })
        .func(users);
    let app = Router::new()
        .route("/me", get(me))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // A stack service goes to `axum::serve` as it is; `app.layer(stack)` works too.
    axum::serve(listener, stack.service(app)).await
}
