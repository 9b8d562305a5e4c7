//! run with: cargo run --example hooks
//! (then: curl -i localhost:3000/ and curl -i -H 'x-api-key: k-123' localhost:3000/)
//!
//! Hooks: before/after middleware that never holds the rest of the stack, the cheapest kind. An
//! API-key check with an async lookup only when the key is not cached, and a response header on
//! every answer, the 401s included.

use std::collections::HashMap;
use std::sync::RwLock;

use axum::{routing::get, Extension, Router};
use callnext::serve::{shutdown_signal, Server};
use callnext::{Flow, Hook, HttpError, Request, Stack};

#[derive(Clone)]
struct Client(String);

struct ApiKeys {
    /// Keys seen before: answered without waiting.
    cache: RwLock<HashMap<String, Client>>,
}

impl ApiKeys {
    /// Stands in for a database query.
    async fn lookup(&self, key: &str) -> Option<Client> {
        tokio::task::yield_now().await;
        (key == "k-123").then(|| Client("acme".into()))
    }
}

impl Hook for ApiKeys {
    type State = ();

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a> {
        let Some(key) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) else {
            return Flow::respond(HttpError::unauthorized("Missing API key"));
        };
        let key = key.to_owned();
        if let Some(client) = self.cache.read().unwrap().get(&key).cloned() {
            req.extensions_mut().insert(client);
            return Flow::Continue(()); // no allocation, no await
        }
        Flow::wait(async move {
            let client = self
                .lookup(&key)
                .await
                .ok_or_else(|| HttpError::unauthorized("Unknown API key"))?;
            self.cache.write().unwrap().insert(key, client.clone());
            req.extensions_mut().insert(client);
            Ok::<_, HttpError>(())
        })
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let stack = Stack::new()
        .on_response("vary", |res| {
            res.headers_mut()
                .append("vary", "x-api-key".parse().unwrap());
        })
        .hook(ApiKeys {
            cache: RwLock::default(),
        });
    print!("{stack}");
    let app = Router::new().route(
        "/",
        get(|Extension(Client(name)): Extension<Client>| async move { format!("hello {name}\n") }),
    );
    let server = Server::new()
        .bind("127.0.0.1:3000".parse().unwrap())
        .await?;
    println!("listening on http://{}", server.local_addr()?);
    server.serve(stack.service(app), shutdown_signal()).await
}
