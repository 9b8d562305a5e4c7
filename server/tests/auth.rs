//! API keys through the binary: `callnext keys create|list|revoke` against the SQLite file of
//! `[middleware.auth] api_keys`, and the server that checks them.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::Server;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn keys(config: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args(["--config", config, "keys"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn status(url: &str, key: Option<&str>) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = http::Request::get(url);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    status
}

#[tokio::test]
async fn keys_made_by_the_command_open_the_server_until_revoked() {
    let dir = std::env::temp_dir().join(format!("callnext-auth-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("keys.db");
    let _ = std::fs::remove_file(&db);
    let config = dir.join("callnext.toml");
    std::fs::write(
        &config,
        format!(
            "[middleware.auth]\napi_keys = \"sqlite://{}\"\ncache_ttl = \"200ms\"\nscopes = {{ \"/items\" = [\"items:read\"] }}\n",
            db.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();

    let (ok, key, err) = keys(
        &config,
        &["create", "--name", "ci", "--scopes", "items:read"],
    );
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("cnk_"), "{key}");
    let id = callnext::middleware::auth::public_id(&key)
        .unwrap()
        .to_owned();
    let (_, other, _) = keys(&config, &["create", "--name", "no-scopes"]);
    let (ok, list, _) = keys(&config, &["list"]);
    assert!(
        ok && list.contains(&id) && list.contains("ci") && list.contains("items:read"),
        "{list}"
    );
    assert!(!list.contains(&key[20..]), "the list never shows a key");

    let server = Server::start(&["--config", &config, "--no-simulated-io"]).await;
    let items = server.url("/items/1");
    assert_eq!(status(&items, None).await, 401);
    assert_eq!(status(&items, Some(&key)).await, 200);
    assert_eq!(status(&items, Some(other.trim())).await, 403);
    // `/` is public by default.
    assert_eq!(status(&server.url("/"), None).await, 200);

    let (ok, out, _) = keys(&config, &["revoke", &id]);
    assert!(ok && out.contains("revoked"), "{out}");
    // Seen by the running server once its cache of the key expires (200 ms here).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(status(&items, Some(&key)).await, 401);
}

#[test]
fn keys_without_a_store_is_one_line_and_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args(["keys", "list"])
        .env_remove("CALLNEXT_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "error: no key store: set `[middleware.auth] api_keys` in the configuration, or --store"
    );
}
