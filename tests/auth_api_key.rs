//! API keys against a real SQLite file and PostgreSQL (127.0.0.1:5432, database `test`, or
//! `DATABASE_URL`): valid, unknown, malformed, revoked, wrong scope; 401/403 with their
//! `WWW-Authenticate`, request id and CORS headers; preflights pass; a database that cannot be
//! reached is a 503; random keys do not reach the database.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use callnext::middleware::auth::{Auth, Identity, KeyStore, KeyStoreError, SqlKeyStore, StoredKey};
use callnext::middleware::{Cors, SetRequestId};
use callnext::{ApiKeyId, Stack, TestClient};
use futures_util::future::BoxFuture;

fn sqlite(name: &str) -> SqlKeyStore {
    let dir = std::env::temp_dir().join(format!("callnext-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&path);
    SqlKeyStore::open(&format!("sqlite://{}", path.display())).unwrap()
}

fn postgres() -> SqlKeyStore {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    SqlKeyStore::open(&url).unwrap()
}

/// A store with its queries counted.
#[derive(Clone)]
struct Counted {
    store: SqlKeyStore,
    finds: Arc<AtomicUsize>,
    loads: Arc<AtomicUsize>,
}

impl KeyStore for Counted {
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<StoredKey>, KeyStoreError>> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        self.store.find(id)
    }
    fn live_ids(&self) -> BoxFuture<'_, Result<Vec<String>, KeyStoreError>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.store.live_ids()
    }
}

fn app() -> Router {
    Router::new()
        .route(
            "/reports",
            get(|who: Identity, key: axum::Extension<ApiKeyId>| async move {
                format!(
                    "{} {} {}",
                    who.subject(),
                    key.0,
                    who.scopes().collect::<Vec<_>>().join(",")
                )
            }),
        )
        .route("/reports/new", post(|| async { "made" }))
        .route("/health/live", get(|| async { "alive" }))
}

fn client(auth: Auth) -> TestClient<callnext::StackService> {
    let cors = Cors::builder()
        .allow_origins(["https://app.example"])
        .allow_headers(["authorization"])
        .build()
        .unwrap();
    let stack = Stack::new().hook(SetRequestId::new()).hook(cors).hook(auth);
    TestClient::new(stack.service(app()))
}

fn auth(store: impl KeyStore, ttl: Duration) -> Auth {
    Auth::builder()
        .api_keys(store)
        .public_paths(["/health/live"])
        .require_scopes("/reports", ["reports:read"])
        .require_scopes("/reports/new", ["reports:read", "reports:write"])
        .cache_ttl(ttl)
        .build()
        .unwrap()
}

async fn the_key_lifecycle(keys: SqlKeyStore) {
    let reader = keys
        .create("reader", &["reports:read".to_owned()])
        .await
        .unwrap();
    let client = client(auth(keys.clone(), Duration::from_secs(30)));
    let origin = ("origin", "https://app.example");

    // Missing: 401, a bare challenge, request id and CORS headers.
    let res = client
        .get("/reports")
        .header(origin.0, origin.1)
        .send()
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        res.json::<serde_json::Value>()["detail"],
        "Not authenticated"
    );
    assert!(res.header("x-request-id").is_some());
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );

    // Valid, as a bearer token and as X-API-Key.
    let res = client.get("/reports").bearer(&reader.key).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text(),
        format!("reader {} reports:read", reader.stored.id)
    );
    let res = client
        .get("/reports")
        .header("x-api-key", reader.key.clone())
        .send()
        .await;
    assert_eq!(res.status(), 200);

    // Malformed, unknown, and a known id with a wrong secret: 401 invalid_token.
    let unknown = callnext::middleware::auth::generate("x", &[], 0).key;
    let wrong_secret = format!(
        "{}{}",
        &reader.key[..reader.key.len() - 1],
        if reader.key.ends_with('0') { '1' } else { '0' }
    );
    for bad in [
        "nonsense",
        "cnk_0123_abcd",
        unknown.as_str(),
        wrong_secret.as_str(),
    ] {
        let res = client
            .get("/reports")
            .bearer(bad)
            .header(origin.0, origin.1)
            .send()
            .await;
        assert_eq!(res.status(), 401, "{bad}");
        assert_eq!(
            res.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{bad}"
        );
        assert!(res.header("x-request-id").is_some());
        assert_eq!(
            res.header("access-control-allow-origin"),
            Some("https://app.example")
        );
    }
    // Another scheme is not a credential of ours.
    let res = client
        .get("/reports")
        .header("authorization", "Basic YTpi")
        .send()
        .await;
    assert_eq!(res.status(), 401);

    // Authenticated without the scope: 403 naming what is needed.
    let res = client
        .post("/reports/new")
        .bearer(&reader.key)
        .header(origin.0, origin.1)
        .send()
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"reports:read reports:write\"")
    );
    assert_eq!(
        res.json::<serde_json::Value>()["detail"],
        "Not enough permissions"
    );
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );

    // Public paths and CORS preflights pass without credentials.
    assert_eq!(client.get("/health/live").await.status(), 200);
    let res = client
        .options("/reports")
        .header(origin.0, origin.1)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );

    // Revoked through the store and this instance: refused at once.
    assert!(keys.revoke(&reader.stored.id).await.unwrap());
    assert!(!keys.revoke(&reader.stored.id).await.unwrap());
    let listed = keys.list().await.unwrap();
    let row = listed
        .iter()
        .find(|k| k.id == reader.stored.id)
        .unwrap_or_else(|| panic!("{} not in {} keys", reader.stored.id, listed.len()));
    assert!(row.revoked_ms.is_some() && row.digest == reader.stored.digest);
}

#[tokio::test]
async fn the_key_lifecycle_on_sqlite() {
    let keys = sqlite("lifecycle");
    the_key_lifecycle(keys.clone()).await;
    let client = client(auth(keys.clone(), Duration::from_secs(30)));
    let made = keys
        .create("again", &["reports:read".to_owned()])
        .await
        .unwrap();
    assert_eq!(client.get("/reports").bearer(&made.key).await.status(), 200);
    keys.revoke(&made.stored.id).await.unwrap();
    // This instance still has it cached until told.
    assert_eq!(client.get("/reports").bearer(&made.key).await.status(), 200);
}

#[tokio::test]
async fn the_key_lifecycle_on_postgres() {
    the_key_lifecycle(postgres()).await;
}

/// Through PgBouncer in transaction mode (`pgbouncer=true`), where each transaction may land
/// on another server connection: the same lifecycle.
#[tokio::test]
async fn the_key_lifecycle_through_pgbouncer() {
    let bouncer = common::OwnPgBouncer::start().await;
    the_key_lifecycle(SqlKeyStore::open(&bouncer.url()).unwrap()).await;
}

/// Many lookups at once through PgBouncer's two server connections: each is parsed and run
/// on one of them, none meets another client's statement.
#[tokio::test]
async fn concurrent_lookups_through_pgbouncer_all_answer() {
    let bouncer = common::OwnPgBouncer::start().await;
    let keys = SqlKeyStore::open(&bouncer.url()).unwrap();
    let key = keys.create("many", &[]).await.unwrap();
    let lookups = (0..200).map(|_| {
        let keys = keys.clone();
        let id = key.stored.id.clone();
        tokio::spawn(async move { keys.find(&id).await })
    });
    for lookup in futures_util::future::join_all(lookups).await {
        let found = lookup.unwrap().unwrap();
        assert_eq!(found.map(|k| k.name), Some("many".to_owned()));
    }
}

#[tokio::test]
async fn revocation_elsewhere_is_seen_within_the_cache_ttl_and_at_once_here() {
    let keys = sqlite("revoke");
    let made = keys
        .create("svc", &["reports:read".to_owned()])
        .await
        .unwrap();
    let ttl = Duration::from_millis(300);
    let here = auth(keys.clone(), ttl);
    let client = client(here.clone());
    assert_eq!(client.get("/reports").bearer(&made.key).await.status(), 200);
    // Revoked by another process (the store alone): cached here until the TTL passes.
    keys.revoke(&made.stored.id).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(client.get("/reports").bearer(&made.key).await.status(), 401);

    let other = keys
        .create("svc2", &["reports:read".to_owned()])
        .await
        .unwrap();
    let client = client_with_fresh_auth(&keys);
    assert_eq!(
        client.0.get("/reports").bearer(&other.key).await.status(),
        200
    );
    keys.revoke(&other.stored.id).await.unwrap();
    client.1.revoke(&other.stored.id);
    assert_eq!(
        client.0.get("/reports").bearer(&other.key).await.status(),
        401
    );
}

fn client_with_fresh_auth(keys: &SqlKeyStore) -> (TestClient<callnext::StackService>, Auth) {
    let auth = auth(keys.clone(), Duration::from_secs(60));
    (client(auth.clone()), auth)
}

#[tokio::test]
async fn ten_thousand_random_keys_do_not_reach_the_database() {
    let keys = sqlite("random");
    let made = keys
        .create("real", &["reports:read".to_owned()])
        .await
        .unwrap();
    let counted = Counted {
        store: keys,
        finds: Arc::default(),
        loads: Arc::default(),
    };
    let (finds, loads) = (Arc::clone(&counted.finds), Arc::clone(&counted.loads));
    let client = client(auth(counted, Duration::from_secs(30)));
    for i in 0..10_000 {
        let key = callnext::middleware::auth::generate(&i.to_string(), &[], 0).key;
        assert_eq!(client.get("/reports").bearer(&key).await.status(), 401);
    }
    // No lookup of any random id; the issued ids are reloaded at most once per 5 s.
    assert_eq!(finds.load(Ordering::SeqCst), 0);
    assert!(
        loads.load(Ordering::SeqCst) <= 5,
        "{} reloads",
        loads.load(Ordering::SeqCst)
    );
    // The real key still works: one lookup, then cached.
    for _ in 0..3 {
        assert_eq!(client.get("/reports").bearer(&made.key).await.status(), 200);
    }
    assert_eq!(finds.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_a_503_not_a_401() {
    // Nothing listens on port 1.
    let keys = SqlKeyStore::open("postgres://postgres@127.0.0.1:1/test").unwrap();
    let client = client(auth(keys, Duration::from_secs(30)));
    let key = callnext::middleware::auth::generate("x", &[], 0).key;
    let res = client.get("/reports").bearer(&key).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.header("retry-after"), Some("1"));
    let body = res.json::<serde_json::Value>();
    assert_eq!(body["detail"], "Service Unavailable");
    assert!(body["request_id"].is_string());
    // Without credentials nothing needs the database: still a 401.
    assert_eq!(client.get("/reports").await.status(), 401);
}

#[test]
fn settings_are_checked_when_built() {
    let err = |b: callnext::middleware::auth::AuthBuilder| b.build().unwrap_err().to_string();
    assert_eq!(
        err(Auth::builder()),
        "invalid `api_keys`: nothing to check credentials with: set `api_keys` (a sqlite:// or postgres:// URL), `jwks_url` or `external_url`"
    );
    let keys = sqlite("settings");
    assert_eq!(
        err(Auth::builder()
            .api_keys(keys.clone())
            .public_paths(["health"])),
        "invalid `public_paths`: `health` does not start with `/`"
    );
    assert_eq!(
        err(Auth::builder()
            .api_keys(keys)
            .require_scopes("/a", ["has space"])),
        "invalid `scopes`: a scope is a non-empty word of visible ASCII without `\"` or `\\`"
    );
}

#[test]
fn the_configuration_table_builds_the_battery_and_names_its_mistakes() {
    let db = std::env::temp_dir().join(format!("callnext-auth-{}-config.db", std::process::id()));
    let text = format!(
        "[middleware.auth]\napi_keys = \"sqlite://{}\"\nscopes = {{ \"/reports\" = [\"reports:read\"] }}\n",
        db.display()
    );
    let stack = common::stack_from_config(&text).unwrap();
    assert_eq!(stack.describe()[0].name, "auth");
    let err = |text: &str| common::stack_from_config(text).unwrap_err();
    assert_eq!(
        err("[middleware.auth]\n"),
        "app.toml: `middleware.auth.api_keys`: invalid `api_keys`: nothing to check credentials with: set `api_keys` (a sqlite:// or postgres:// URL), `jwks_url` or `external_url`"
    );
    assert_eq!(
        err("[middleware.auth]\napi_keys = \"mysql://x\"\n"),
        "app.toml:2: `middleware.auth.api_keys`: invalid `api_keys`: expected a postgres:// or sqlite:// URL, got `mysql://x`"
    );
}

#[test]
fn auth_outside_cors_is_named_by_the_linter() {
    let cors = || {
        Cors::builder()
            .allow_origins(["https://app.example"])
            .build()
            .unwrap()
    };
    let auth = auth(sqlite("lint"), Duration::from_secs(30));
    let warnings = Stack::new().hook(auth.clone()).hook(cors()).lint();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].rule(), "cors-outside");
    assert_eq!(
        warnings[0].to_string(),
        "`cors` runs after `auth`: put CORS before it, so its answers carry CORS headers and preflights pass"
    );
    assert_eq!(Stack::new().hook(cors()).hook(auth).lint(), []);
}

/// A TCP relay in front of PostgreSQL that the test can cut: stopping it closes every
/// connection through it and the port, as a database that goes away does.
struct Relay {
    addr: std::net::SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(addr: std::net::SocketAddr, upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                accepted.lock().unwrap().push(relay.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Self { addr, tasks }
    }

    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test]
async fn the_database_stopped_mid_run_is_a_503_and_recovery_is_seen() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let upstream = {
        let rest = url.split_once('@').map_or(url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap().to_owned()
    };
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), upstream.clone()).await;
    let through = url.replacen(&upstream, &relay.addr.to_string(), 1);
    let keys = SqlKeyStore::open(&through).unwrap();
    let made = keys
        .create("relayed", &["reports:read".to_owned()])
        .await
        .unwrap();
    // A cache shorter than the test's steps: every request asks the database.
    let client = client(auth(keys, Duration::from_millis(1)));
    assert_eq!(client.get("/reports").bearer(&made.key).await.status(), 200);

    relay.stop();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for _ in 0..3 {
        let res = client.get("/reports").bearer(&made.key).await;
        assert_eq!(res.status(), 503, "{}", res.text());
        assert_eq!(res.header("retry-after"), Some("1"));
    }

    // The database is back on the same address: keys are accepted again.
    let relay = Relay::start(relay.addr, upstream).await;
    let mut status = 0;
    for _ in 0..50 {
        status = client
            .get("/reports")
            .bearer(&made.key)
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    relay.stop();
}
