//! The external auth service, started here on 127.0.0.1: allow (identity and copied headers),
//! deny (401 and 403 passed on), timeout, down, failing; the decision cache; forged identity
//! headers removed; failed authentications rate-limited per client address.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use callnext::middleware::auth::{Auth, AuthMethod, ExternalAuth, Identity};
use callnext::middleware::{Cors, RateLimit, SetRequestId};
use callnext::{Stack, TestClient, UserId};
use serde_json::{json, Value};

/// What the service saw of its last request.
#[derive(Default)]
struct Seen {
    method: String,
    headers: Vec<(String, String)>,
}

struct Service {
    url: String,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
}

/// An auth service deciding by the bearer token: `good` (200, ann, scope `read`), `admin`
/// (200, scopes `read admin`), `forbidden` (403), `slow` (answers after 10 s), `broken` (500),
/// anything else 401.
async fn service() -> Service {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new().route(
        "/check",
        any({
            let (calls, seen) = (Arc::clone(&calls), Arc::clone(&seen));
            move |method: http::Method, headers: HeaderMap| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                *seen.lock().unwrap() = Seen {
                    method: method.to_string(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                        .collect(),
                };
                let token = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                match token {
                    "good" => (
                        [
                            ("x-auth-user", "ann"),
                            ("x-auth-scopes", "read"),
                            ("x-auth-email", "ann@example.test"),
                        ],
                        "",
                    )
                        .into_response(),
                    "admin" => (
                        [("x-auth-user", "root"), ("x-auth-scopes", "read admin")],
                        "",
                    )
                        .into_response(),
                    "forbidden" => StatusCode::FORBIDDEN.into_response(),
                    // Allowed for one client on one host only.
                    "bound" => {
                        let is = |name: &str, value: &str| {
                            headers.get(name).and_then(|v| v.to_str().ok()) == Some(value)
                        };
                        if is("x-forwarded-host", "app.example")
                            && is("x-forwarded-for", "192.0.2.1")
                        {
                            ([("x-auth-user", "ann")], "").into_response()
                        } else {
                            StatusCode::FORBIDDEN.into_response()
                        }
                    }
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        StatusCode::OK.into_response()
                    }
                    "broken" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    _ => (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Bearer realm=\"test\"")],
                    )
                        .into_response(),
                }
            }
        }),
    );
    let addr = common::serve_router(app).await;
    Service {
        url: format!("http://{addr}/check"),
        calls,
        seen,
    }
}

fn app() -> Router {
    Router::new()
        .route(
            "/items",
            get(
                |who: Identity, user: axum::Extension<UserId>, headers: HeaderMap| async move {
                    assert_eq!(who.method(), AuthMethod::External);
                    json!({
                        "subject": who.subject(),
                        "user": user.0.as_str(),
                        "scopes": who.scopes().collect::<Vec<_>>(),
                        "email": headers.get("x-auth-email").map(|v| v.to_str().unwrap()),
                    })
                    .to_string()
                },
            ),
        )
        .route("/admin", get(|| async { "admin" }))
        .route("/health/live", get(|| async { "alive" }))
}

fn stack(external: ExternalAuth) -> Stack {
    let auth = Auth::builder()
        .external(external)
        .public_paths(["/health/live"])
        .require_scopes("/admin", ["admin"])
        .build()
        .unwrap();
    let cors = Cors::builder()
        .allow_origins(["https://app.example"])
        .allow_headers(["authorization"])
        .build()
        .unwrap();
    Stack::new().hook(SetRequestId::new()).hook(cors).hook(auth)
}

fn detail(res: &callnext::TestResponse) -> String {
    res.json::<Value>()["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_service_allows_and_denies() {
    let svc = service().await;
    let settings = ExternalAuth::new(&svc.url)
        .copy_headers(["x-auth-email"])
        .cache_ttl(Duration::ZERO);
    let client = TestClient::new(stack(settings).service(app()));

    // Allowed: the identity and the copied header reach the handler; a forged copy does not.
    let res = client
        .get("/items?page=2")
        .bearer("good")
        .header("x-auth-email", "forged@evil.test")
        .header("cookie", "sid=1")
        .header("x-other", "not forwarded")
        .await;
    assert_eq!(res.status(), 200, "{}", res.text());
    assert_eq!(
        res.json::<Value>(),
        json!({"subject": "ann", "user": "ann", "scopes": ["read"], "email": "ann@example.test"})
    );
    {
        let seen = svc.seen.lock().unwrap();
        let header = |name: &str| {
            seen.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(seen.method, "GET");
        assert_eq!(header("authorization"), ["Bearer good"]);
        assert_eq!(header("cookie"), ["sid=1"]);
        assert_eq!(header("x-forwarded-method"), ["GET"]);
        assert_eq!(header("x-forwarded-uri"), ["/items?page=2"]);
        assert!(header("x-other").is_empty());
        assert!(
            header("x-auth-email").is_empty(),
            "a forged header was forwarded"
        );
    }

    // Denied: 401 with the service's challenge, 403 as 403; request id and CORS headers on both.
    for (token, status, challenge) in [
        ("nope", 401, Some("Bearer realm=\"test\"")),
        ("forbidden", 403, None),
    ] {
        let res = client
            .get("/items")
            .bearer(token)
            .header("origin", "https://app.example")
            .await;
        assert_eq!(res.status(), status);
        assert_eq!(res.header("www-authenticate"), challenge);
        assert!(res.header("x-request-id").is_some());
        assert_eq!(
            res.header("access-control-allow-origin"),
            Some("https://app.example")
        );
    }
    // No credentials at all: the service decides that too.
    assert_eq!(client.get("/items").await.status(), 401);

    // Scopes the service names are required like any other.
    assert_eq!(client.get("/admin").bearer("good").await.status(), 403);
    assert_eq!(client.get("/admin").bearer("admin").await.text(), "admin");

    // Public paths and preflights do not ask.
    let before = svc.calls.load(Ordering::SeqCst);
    assert_eq!(client.get("/health/live").await.status(), 200);
    let res = client
        .options("/items")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .await;
    assert!(res.status().is_success());
    assert_eq!(svc.calls.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn a_slow_failing_or_absent_service_is_a_503_never_a_401() {
    let svc = service().await;
    let client = TestClient::new(
        stack(ExternalAuth::new(&svc.url).timeout(Duration::from_millis(200))).service(app()),
    );
    for token in ["slow", "broken"] {
        let res = client.get("/items").bearer(token).await;
        assert_eq!(res.status(), 503, "{token}");
        assert_eq!(res.header("retry-after"), Some("1"));
        assert_eq!(detail(&res), "Service Unavailable");
    }
    // Nothing listens: bind a port, then let it go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down =
        TestClient::new(stack(ExternalAuth::new(format!("http://{closed}/check"))).service(app()));
    let res = down.get("/items").bearer("good").await;
    assert_eq!(res.status(), 503);
    // Failures are not cached: the service is asked again.
    let before = svc.calls.load(Ordering::SeqCst);
    client.get("/items").bearer("broken").await;
    assert_eq!(svc.calls.load(Ordering::SeqCst), before + 1);
}

#[tokio::test]
async fn a_service_that_keeps_failing_is_left_alone_for_a_while() {
    let svc = service().await;
    let client = TestClient::new(
        stack(ExternalAuth::new(&svc.url).timeout(Duration::from_millis(200))).service(app()),
    );
    // Three failures in a row open the store guard's breaker: the next request is a 503
    // without asking the service, and it is asked again once the breaker lets one through.
    for _ in 0..3 {
        assert_eq!(client.get("/items").bearer("broken").await.status(), 503);
    }
    let asked = svc.calls.load(Ordering::SeqCst);
    assert_eq!(client.get("/items").bearer("good").await.status(), 503);
    assert_eq!(
        svc.calls.load(Ordering::SeqCst),
        asked,
        "asked while the breaker is open"
    );
    let mut status = 0;
    for _ in 0..100 {
        status = client.get("/items").bearer("good").await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the service, healthy again, decides again");
}

#[tokio::test]
async fn decisions_are_cached_by_credential_method_and_path() {
    let svc = service().await;
    let client = TestClient::new(stack(ExternalAuth::new(&svc.url)).service(app()));
    for _ in 0..5 {
        assert_eq!(client.get("/items").bearer("good").await.status(), 200);
        assert_eq!(client.get("/items").bearer("nope").await.status(), 401);
    }
    assert_eq!(svc.calls.load(Ordering::SeqCst), 2);
    // Another path, another method or another credential is another decision.
    client.get("/items?page=2").bearer("good").await;
    client.post("/items").bearer("good").send().await;
    client.get("/items").bearer("admin").await;
    assert_eq!(svc.calls.load(Ordering::SeqCst), 5);
}

/// The service decides on the client's address and the host too: one client's "allow" is not
/// replayed to another client, nor to another host.
#[tokio::test]
async fn a_decision_is_not_replayed_to_another_client_or_host() {
    let svc = service().await;
    let app = || stack(ExternalAuth::new(&svc.url)).service(app());
    let peer = |ip: &str| std::net::SocketAddr::new(ip.parse().unwrap(), 4000);
    let allowed = TestClient::new(app()).peer(peer("192.0.2.1"));
    let other = TestClient::new(app()).peer(peer("198.51.100.7"));
    let get = |client: &TestClient<callnext::StackService>, host: &'static str| {
        client
            .get("/items")
            .header("host", host)
            .bearer("bound")
            .send()
    };
    assert_eq!(get(&allowed, "app.example").await.status(), 200);
    assert_eq!(get(&allowed, "app.example").await.status(), 200);
    assert_eq!(
        svc.calls.load(Ordering::SeqCst),
        1,
        "cached for the same client"
    );
    assert_eq!(get(&other, "app.example").await.status(), 403);
    assert_eq!(get(&allowed, "admin.example").await.status(), 403);
    assert_eq!(svc.calls.load(Ordering::SeqCst), 3);
}

/// The identity headers the service sets are never taken from the client, even when they are
/// not among the copied ones.
#[tokio::test]
async fn the_services_identity_headers_are_removed_from_the_clients_request() {
    let svc = service().await;
    let app = Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            let seen = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            json!({"user": seen("x-auth-user"), "scopes": seen("x-auth-scopes")}).to_string()
        }),
    );
    let client = TestClient::new(stack(ExternalAuth::new(&svc.url)).service(app));
    let res = client
        .get("/echo")
        .bearer("good")
        .header("x-auth-user", "root")
        .header("x-auth-scopes", "admin")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>(), json!({"user": null, "scopes": null}));
    // Nor sent to the service as the client's own.
    let seen = svc.seen.lock().unwrap();
    assert!(
        !seen
            .headers
            .iter()
            .any(|(k, _)| k == "x-auth-user" || k == "x-auth-scopes"),
        "{:?}",
        seen.headers
    );
}

/// The recipe of the README: a limiter that counts only 401s, keyed by client address, outside
/// auth, refuses a client after its quota of failures, and valid requests do not count.
#[tokio::test]
async fn failed_authentications_are_rate_limited_per_client_address() {
    let svc = service().await;
    let failures = RateLimit::builder()
        .name("auth_failures")
        .limit("3/minute")
        .count_statuses([401])
        .build()
        .unwrap();
    let auth = Auth::builder()
        .external(ExternalAuth::new(&svc.url))
        .build()
        .unwrap();
    let stack = Stack::new().hook(failures).hook(auth);
    let service = stack.service(app());
    let attacker = TestClient::new(service.clone()).peer("192.0.2.7:5000".parse().unwrap());
    let other = TestClient::new(service).peer("192.0.2.8:5000".parse().unwrap());

    // Successes do not count.
    for _ in 0..10 {
        assert_eq!(attacker.get("/items").bearer("good").await.status(), 200);
    }
    for i in 0..3 {
        let res = attacker.get("/items").bearer(&format!("guess-{i}")).await;
        assert_eq!(res.status(), 401);
    }
    // Out of failures: refused before auth is asked, whatever the credential.
    let calls = svc.calls.load(Ordering::SeqCst);
    let res = attacker.get("/items").bearer("guess-4").await;
    assert_eq!(res.status(), 429);
    assert!(res.header("retry-after").is_some());
    assert_eq!(attacker.get("/items").bearer("good").await.status(), 429);
    assert_eq!(svc.calls.load(Ordering::SeqCst), calls);
    // Another address is not affected.
    assert_eq!(other.get("/items").bearer("good").await.status(), 200);
}

#[test]
fn the_configuration_table_builds_the_battery_and_names_its_mistakes() {
    let ok = "[middleware.auth]\nexternal_url = \"http://127.0.0.1:4180/check\"\nexternal_copy_headers = [\"x-auth-email\"]\nexternal_timeout = \"500ms\"\n";
    let stack = common::stack_from_config(ok).unwrap();
    assert_eq!(stack.describe()[0].name, "auth");
    let err = |text: &str| common::stack_from_config(text).unwrap_err();
    assert_eq!(
        err("[middleware.auth]\nexternal_url = \"auth-service:4180\"\n"),
        "app.toml:2: `middleware.auth.external_url`: invalid `external_url`: expected an http:// or https:// URL, got `auth-service:4180`"
    );
    assert_eq!(
        err("[middleware.auth]\nexternal_url = \"http://a/check\"\nexternal_copy_headers = [\"bad header\"]\n"),
        "app.toml:3: `middleware.auth.external_copy_headers`: invalid `external_copy_headers`: `bad header` is not a header name"
    );
}

#[test]
fn a_limit_keyed_by_user_before_auth_is_named_by_the_linter() {
    use callnext::middleware::rate_limit::KeyBy;
    let auth = || {
        Auth::builder()
            .external(ExternalAuth::new("http://127.0.0.1:4180/check"))
            .build()
            .unwrap()
    };
    let by_user = || {
        RateLimit::builder()
            .name("per_user")
            .limit("10/second")
            .key(KeyBy::User)
            .build()
            .unwrap()
    };
    let warnings = Stack::new().hook(by_user()).hook(auth()).lint();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].rule(), "limit-after-auth");
    assert_eq!(
        warnings[0].to_string(),
        "`rate_limit` is keyed by user or API key but runs before `auth`: put it after auth, or every request counts against its client address"
    );
    assert!(Stack::new().hook(auth()).hook(by_user()).lint().is_empty());
}

/// The access log, outside auth, names the user auth found (JSON `user`, the remote user of
/// `combined`), and nobody for a request auth refused.
#[tokio::test]
async fn the_access_log_names_the_user() {
    use callnext::middleware::access_log::{AccessLog, Format, SharedWriter, Sink};

    let svc = service().await;
    for format in [Format::Json, Format::Combined] {
        let collected = Arc::new(Mutex::new(Vec::<u8>::new()));
        let log = AccessLog::builder()
            .format(format)
            .sink(Sink::Writer(SharedWriter(collected.clone())))
            .build()
            .unwrap();
        let auth = Auth::builder()
            .external(ExternalAuth::new(&svc.url))
            .build()
            .unwrap();
        let client = TestClient::new(Stack::new().hook(log.clone()).hook(auth).service(app()));
        assert_eq!(client.get("/items").bearer("good").await.status(), 200);
        assert_eq!(client.get("/items").bearer("nope").await.status(), 401);
        assert!(log.handle().flush(Duration::from_secs(10)));
        let text = String::from_utf8_lossy(&collected.lock().unwrap()).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        if format == Format::Json {
            let users: Vec<Value> = lines
                .iter()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["user"].clone())
                .collect();
            assert_eq!(users, [json!("ann"), Value::Null]);
        } else {
            assert!(lines[0].contains(" - ann ["), "{}", lines[0]);
            assert!(lines[1].contains(" - - ["), "{}", lines[1]);
        }
    }
}
