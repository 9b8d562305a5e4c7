//! Sessions with the memory store: the shared behavioural suite, and settings checked when
//! built.

mod session_suite;

use std::time::Duration;

use callnext::middleware::session::{MemoryStore, Session, Sessions};
use callnext::{Stack, TestClient, TrustedProxies};

fn store() -> MemoryStore {
    MemoryStore::new(1000)
}

#[tokio::test]
async fn untouched_requests_cost_no_store_call_and_get_no_cookie() {
    session_suite::untouched_requests_cost_no_store_call_and_get_no_cookie(store()).await;
}

#[tokio::test]
async fn the_cookie_and_tampered_or_unknown_ids() {
    session_suite::the_cookie_and_tampered_or_unknown_ids(store()).await;
}

#[tokio::test]
async fn every_cookie_field_is_read_and_a_tossed_cookie_loses() {
    session_suite::every_cookie_field_is_read_and_a_tossed_cookie_loses(store()).await;
}

#[tokio::test(start_paused = true)]
async fn idle_and_absolute_timeouts() {
    session_suite::idle_and_absolute_timeouts(store()).await;
}

#[tokio::test]
async fn cycle_id_keeps_the_data_and_ends_the_old_id() {
    session_suite::cycle_id_keeps_the_data_and_ends_the_old_id(store()).await;
}

#[tokio::test]
async fn a_cycled_id_never_puts_the_new_data_under_the_old_id() {
    session_suite::a_cycled_id_never_puts_the_new_data_under_the_old_id(store()).await;
}

#[tokio::test]
async fn a_logout_stays_a_logout_against_a_late_writer() {
    session_suite::a_logout_stays_a_logout_against_a_late_writer(store()).await;
}

#[tokio::test]
async fn concurrent_writers_to_different_keys_are_both_kept() {
    session_suite::concurrent_writers_to_different_keys_are_both_kept(store()).await;
}

#[test]
fn settings_are_checked_when_built() {
    let err =
        |b: callnext::middleware::session::SessionsBuilder| b.build().unwrap_err().to_string();
    assert_eq!(
        err(Sessions::builder().secret([1u8; 10])),
        "invalid `secret`: must be at least 64 bytes, got 10 (set it, or CALLNEXT_SESSION_SECRET)"
    );
    assert_eq!(
        err(Sessions::builder().secret([1u8; 64]).cookie("a b")),
        "invalid `cookie`: `a b` is not a cookie name"
    );
    assert_eq!(
        err(Sessions::builder()
            .secret([1u8; 64])
            .idle_timeout(Duration::from_secs(10))
            .absolute_timeout(Duration::from_secs(5))),
        "invalid `idle_timeout`: cannot be longer than absolute_timeout"
    );
    assert_eq!(
        err(Sessions::builder().secret([1u8; 64]).cookie_path("app; Domain=evil.example")),
        "invalid `cookie_path`: `app; Domain=evil.example` is not a cookie path: it starts with `/`, without spaces or `;`"
    );
    assert_eq!(
        err(Sessions::builder()
            .secret([1u8; 64])
            .cookie_domain("example.com; Secure")),
        "invalid `cookie_domain`: `example.com; Secure` is not a domain name"
    );
    assert_eq!(
        err(Sessions::builder()
            .secret([1u8; 64])
            .host_prefix(true)
            .cookie_path("/app")),
        "invalid `host_prefix`: a `__Host-` cookie has `Path=/` and no `Domain` (browsers refuse it otherwise): leave `cookie_path` and `cookie_domain` unset"
    );
}

#[tokio::test]
async fn the_cookie_carries_its_max_age_path_and_domain_as_set() {
    let sessions = Sessions::builder()
        .secret([5u8; 64])
        .cookie_max_age(Duration::from_secs(3600))
        .cookie_path("/app")
        .cookie_domain("example.com")
        .build()
        .unwrap();
    let res = writer_client(Stack::new(), sessions).post("/").await;
    let set = set_cookie(&res);
    for part in [
        "Max-Age=3600",
        "Path=/app",
        "Domain=example.com",
        "HttpOnly",
    ] {
        assert!(set.contains(part), "{set}");
    }
    // Zero: a cookie for the browser's session, without Max-Age.
    let sessions = Sessions::builder()
        .secret([5u8; 64])
        .cookie_max_age(Duration::ZERO)
        .build()
        .unwrap();
    let set = set_cookie(&writer_client(Stack::new(), sessions).post("/").await);
    assert!(
        !set.contains("Max-Age") && !set.contains("Expires"),
        "{set}"
    );
    // By default: the absolute timeout (8 hours).
    let sessions = Sessions::builder().secret([5u8; 64]).build().unwrap();
    let set = set_cookie(&writer_client(Stack::new(), sessions).post("/").await);
    assert!(
        set.contains("Max-Age=28800") && set.contains("Path=/;"),
        "{set}"
    );
}

/// A client of a stack with `sessions`, its one route writing to the session.
fn writer_client(stack: Stack, sessions: Sessions) -> TestClient<callnext::StackService> {
    TestClient::new(stack.hook(sessions).service(session_suite::writer()))
}

fn set_cookie(res: &callnext::TestResponse) -> String {
    res.header("set-cookie").expect("a cookie").to_owned()
}

#[tokio::test]
async fn the_cookie_is_secure_behind_a_trusted_proxy_saying_https() {
    let sessions = || Sessions::builder().secret([3u8; 64]).build().unwrap();
    // TestClient's requests come from 127.0.0.1: trusted here.
    let trusted = || Stack::new().trusted_proxies(TrustedProxies::parse(["127.0.0.1"]).unwrap());
    let client = writer_client(trusted(), sessions());
    let https = client
        .post("/")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    assert!(
        set_cookie(&https).contains("; Secure"),
        "{}",
        set_cookie(&https)
    );
    let http = client
        .post("/")
        .header("x-forwarded-proto", "http")
        .send()
        .await;
    assert!(
        !set_cookie(&http).contains("Secure"),
        "{}",
        set_cookie(&http)
    );
    // The same header from a client that is not a trusted proxy is not believed.
    let direct = writer_client(Stack::new(), sessions());
    let forged = direct
        .post("/")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    assert!(
        !set_cookie(&forged).contains("Secure"),
        "{}",
        set_cookie(&forged)
    );
}

#[tokio::test]
async fn the_host_prefix_names_the_cookie_and_makes_it_secure() {
    let sessions = Sessions::builder()
        .secret([4u8; 64])
        .cookie("sid")
        .host_prefix(true)
        .build()
        .unwrap();
    let client = writer_client(Stack::new(), sessions);
    let res = client.post("/").await;
    let set = set_cookie(&res);
    assert!(set.starts_with("__Host-sid="), "{set}");
    for part in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    // The prefixed cookie brings the same session back: no new cookie is issued.
    let again = client
        .post("/")
        .header("cookie", set.split(';').next().unwrap().to_owned())
        .send()
        .await;
    assert_eq!(again.status(), 200);
    assert!(again.header("set-cookie").is_none());
}

#[tokio::test]
async fn cookies_signed_with_an_old_secret_are_accepted_while_rotating() {
    let store = MemoryStore::new(100);
    let (old, new) = ([1u8; 64], [2u8; 64]);
    let before = writer_client(
        Stack::new(),
        Sessions::builder()
            .secret(old)
            .store(store.clone())
            .build()
            .unwrap(),
    );
    let cookie = set_cookie(&before.post("/").await)
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let app = || {
        axum::Router::new().route(
            "/",
            axum::routing::get(|s: Session| async move {
                Ok::<_, callnext::HttpError>(format!("{:?}", s.get::<String>("k").await?))
            }),
        )
    };
    let read = |sessions: Sessions| TestClient::new(Stack::new().hook(sessions).service(app()));
    // Rotated: the new secret signs, the old one still verifies.
    let rotated = read(
        Sessions::builder()
            .secret(new)
            .old_secrets([old])
            .store(store.clone())
            .build()
            .unwrap(),
    );
    let res = rotated
        .get("/")
        .header("cookie", cookie.clone())
        .send()
        .await;
    assert_eq!(res.text(), "Some(\"v\")");
    // Once the old secret is dropped from the list, its cookies are refused.
    let dropped = read(
        Sessions::builder()
            .secret(new)
            .store(store.clone())
            .build()
            .unwrap(),
    );
    let res = dropped.get("/").header("cookie", cookie).send().await;
    assert_eq!(res.text(), "None");
    // New cookies are signed with the new secret.
    let issued = writer_client(
        Stack::new(),
        Sessions::builder()
            .secret(new)
            .old_secrets([old])
            .store(store.clone())
            .build()
            .unwrap(),
    );
    let fresh = set_cookie(&issued.post("/").await)
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let res = dropped
        .get("/")
        .header("cookie", fresh.clone())
        .send()
        .await;
    assert_eq!(res.text(), "Some(\"v\")");
    let old_only = read(
        Sessions::builder()
            .secret(old)
            .store(store)
            .build()
            .unwrap(),
    );
    let res = old_only.get("/").header("cookie", fresh).send().await;
    assert_eq!(res.text(), "None");
}

/// A flood of cookieless writes makes room from other new sessions, never from a session a
/// client has come back with (a login); when every entry is such a session, a new one is
/// refused with 503 rather than dropping a login.
#[tokio::test]
async fn anonymous_writes_never_evict_a_logged_in_session() {
    let store = MemoryStore::new(100);
    let sessions = Sessions::builder()
        .secret([8u8; 64])
        .store(store.clone())
        .build()
        .unwrap();
    let client = writer_client(Stack::new(), sessions);
    let read = |cookie: String| client.post("/").header("cookie", cookie).send();
    // Logged in: made, then used again with its cookie.
    let login = set_cookie(&client.post("/").await)
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let again = read(login.clone()).await;
    assert_eq!(again.status(), 200);
    assert!(again.header("set-cookie").is_none(), "the login was kept");
    for _ in 0..1000 {
        assert_eq!(client.post("/").await.status(), 200);
    }
    assert!(store.len() <= 100, "{} entries", store.len());
    let res = read(login.clone()).await;
    assert!(res.header("set-cookie").is_none(), "the login was evicted");

    // Full of sessions that clients hold: a new one is refused, none of them dropped.
    let mut held = vec![login];
    while held.len() < 100 {
        let cookie = set_cookie(&client.post("/").await)
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(read(cookie.clone()).await.status(), 200);
        held.push(cookie);
    }
    let refused = client.post("/").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(store.refused(), 1);
    for cookie in held {
        let res = read(cookie).await;
        assert_eq!(res.status(), 200);
        assert!(res.header("set-cookie").is_none());
    }
}
