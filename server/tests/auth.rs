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

    // Nothing to revoke: an unknown id or name fails, saying so.
    let (ok, _, err) = keys(&config, &["revoke", "0123456789abcdef"]);
    assert!(
        !ok && err.contains("no live key with id or name `0123456789abcdef`"),
        "{err}"
    );
    let (ok, out, _) = keys(&config, &["revoke", &id]);
    assert!(ok && out.contains("revoked"), "{out}");
    // Revoked already: nothing done, and the exit code says so.
    let (ok, _, err) = keys(&config, &["revoke", &id]);
    assert!(!ok && err.contains("no live key"), "{err}");
    // By name.
    let (ok, out, _) = keys(&config, &["revoke", "no-scopes"]);
    assert!(
        ok && out.contains("revoked 1 key(s) named no-scopes"),
        "{out}"
    );
    // Seen by the running server once its cache of the keys expires (200 ms here).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(status(&items, Some(&key)).await, 401);
    assert_eq!(status(&items, Some(other.trim())).await, 401);
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

/// JWTs and an external service through the binary's `[middleware.auth]`: a JWKS server and an
/// auth service started here, the server checking tokens against the one and asking the other.
#[tokio::test]
async fn jwts_and_an_external_service_from_the_configuration_file() {
    use axum::response::IntoResponse;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    callnext::middleware::auth::Jwt::install_crypto();
    let key = EncodingKey::from_rsa_pem(include_bytes!("../../tests/keys/jwt_a.pem")).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("a".to_owned());
    let set = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    let helpers = axum::Router::new()
        .route("/jwks", axum::routing::get(move || async move { set }))
        .route(
            "/check",
            axum::routing::any(|headers: http::HeaderMap| async move {
                let good = headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer let-me-in");
                if good {
                    (http::StatusCode::OK, [("x-auth-user", "svc")]).into_response()
                } else {
                    http::StatusCode::UNAUTHORIZED.into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let helper = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, helpers).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("callnext-auth-jwt-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("callnext.toml");
    std::fs::write(
        &config,
        format!(
            "[middleware.auth]\njwks_url = \"http://{helper}/jwks\"\njwt_issuer = \"https://issuer.test/\"\njwt_audience = \"items\"\nexternal_url = \"http://{helper}/check\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&[
        "--config",
        &config.display().to_string(),
        "--no-simulated-io",
    ])
    .await;
    let items = server.url("/items/1");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = |aud: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("a".to_owned());
        let claims = serde_json::json!({"sub": "ann", "iss": "https://issuer.test/", "aud": aud, "exp": exp});
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    assert_eq!(status(&items, Some(&token("items"))).await, 200);
    assert_eq!(status(&items, Some(&token("elsewhere"))).await, 401);
    assert_eq!(status(&items, Some("let-me-in")).await, 200);
    assert_eq!(status(&items, Some("guess")).await, 401);
    assert_eq!(status(&items, None).await, 401);
}
