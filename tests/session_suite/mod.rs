//! The behaviour every session store must give, run against each store (`tests/session.rs`
//! with memory, `tests/session_redis.rs` with Redis): lazy loading, the cookie's attributes,
//! tampered and unknown ids, idle and absolute timeouts on a paused clock, id rotation, logout
//! that sticks against a late writer, and concurrent writers to different keys both kept.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use callnext::middleware::session::{Record, Saved, Session, SessionStore, Sessions, StoreError};
use callnext::{HttpError, Stack, TestClient};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, Mutex};

/// A store, with its calls counted; its `destroy` fails while `fail_destroy` is set.
#[derive(Clone)]
pub struct Counted<S> {
    store: S,
    calls: Arc<AtomicUsize>,
    fail_destroy: Arc<std::sync::atomic::AtomicBool>,
}

impl<S: SessionStore> SessionStore for Counted<S> {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.store.load(id)
    }
    fn create<'a>(&'a self, id: &'a str, r: &'a Record) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.store.create(id, r)
    }
    fn save<'a>(
        &'a self,
        id: &'a str,
        r: &'a Record,
        v: u64,
    ) -> BoxFuture<'a, Result<Saved, StoreError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.store.save(id, r, v)
    }
    fn destroy<'a>(&'a self, id: &'a str, until: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_destroy.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError("the store went away".into())) });
        }
        self.store.destroy(id, until)
    }
}

/// Channels a handler waits on, so two requests can be interleaved.
#[derive(Clone, Default)]
struct Gates {
    loaded: Arc<Mutex<Option<mpsc::UnboundedSender<()>>>>,
    go: Arc<Mutex<Option<mpsc::UnboundedReceiver<()>>>>,
}

fn app(gates: Gates) -> Router {
    Router::new()
        .route("/untouched", get(|| async { "hi" }))
        .route(
            "/get/{key}",
            get(|s: Session, axum::extract::Path(key): axum::extract::Path<String>| async move {
                Ok::<_, HttpError>(format!("{:?}", s.get::<String>(&key).await?))
            }),
        )
        .route(
            "/set/{key}/{value}",
            post(
                |s: Session,
                 axum::extract::Path((key, value)): axum::extract::Path<(String, String)>| async move {
                    s.insert(&key, &value).await?;
                    Ok::<_, HttpError>("set")
                },
            ),
        )
        .route(
            "/login",
            post(|s: Session| async move {
                s.cycle_id().await?;
                Ok::<_, HttpError>("cycled")
            }),
        )
        .route(
            "/login-as/{user}",
            post(
                |s: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                    s.insert("user", &user).await?;
                    s.cycle_id().await?;
                    Ok::<_, HttpError>("logged in")
                },
            ),
        )
        .route(
            "/logout",
            post(|s: Session| async move {
                s.destroy().await?;
                Ok::<_, HttpError>("bye")
            }),
        )
        // Loads, says so, waits for the test, then writes.
        .route(
            "/slow/{key}",
            post(
                |State(gates): State<Gates>,
                 s: Session,
                 axum::extract::Path(key): axum::extract::Path<String>| async move {
                    let _ = s.get::<String>("anything").await?;
                    if let Some(tx) = gates.loaded.lock().await.as_ref() {
                        let _ = tx.send(());
                    }
                    let rx = gates.go.lock().await.take();
                    if let Some(mut rx) = rx {
                        rx.recv().await;
                    }
                    s.insert(&key, "late").await?;
                    Ok::<_, HttpError>("late")
                },
            ),
        )
        .with_state(gates)
}

fn sessions(store: impl SessionStore) -> Sessions {
    Sessions::builder()
        .secret([42u8; 64])
        .store(store)
        .idle_timeout(Duration::from_secs(60))
        .absolute_timeout(Duration::from_secs(150))
        .build()
        .unwrap()
}

fn client(store: impl SessionStore, gates: Gates) -> TestClient<callnext::StackService> {
    TestClient::new(Stack::new().hook(sessions(store)).service(app(gates)))
}

/// `id=...` from a `Set-Cookie`.
fn cookie(res: &callnext::TestResponse) -> String {
    res.header("set-cookie")
        .expect("a cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn get_key(client: &TestClient<callnext::StackService>, cookie: &str, key: &str) -> String {
    client
        .get(&format!("/get/{key}"))
        .header("cookie", cookie.to_owned())
        .send()
        .await
        .text()
}

pub async fn untouched_requests_cost_no_store_call_and_get_no_cookie(store: impl SessionStore) {
    let calls = Arc::new(AtomicUsize::new(0));
    let store = Counted {
        store,
        calls: Arc::clone(&calls),
        fail_destroy: Arc::default(),
    };
    let client = client(store, Gates::default());
    let res = client.get("/untouched").await;
    assert!(res.header("set-cookie").is_none());
    // Even with a session cookie, a route that does not use the session loads nothing.
    let made = client.post("/set/a/1").await;
    let id = cookie(&made);
    let before = calls.load(Ordering::SeqCst);
    client.get("/untouched").header("cookie", id).send().await;
    assert_eq!(calls.load(Ordering::SeqCst), before);
}

pub async fn the_cookie_and_tampered_or_unknown_ids(store: impl SessionStore) {
    let client = client(store, Gates::default());
    let res = client.post("/set/colour/blue").await;
    let set = res.header("set-cookie").unwrap().to_owned();
    // Max-Age: the absolute timeout (150 s here), as long as the session can live.
    for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=150"] {
        assert!(set.contains(part), "{set}");
    }
    for absent in ["Domain", "Expires", "Secure"] {
        assert!(!set.contains(absent), "{set}");
    }
    let id = cookie(&res);
    assert!(id.starts_with("id="));
    assert_eq!(get_key(&client, &id, "colour").await, "Some(\"blue\")");

    // One character changed: the signature fails and the data is not adopted.
    let mut tampered = id.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(get_key(&client, &tampered, "colour").await, "None");
    let fresh = client
        .post("/set/colour/red")
        .header("cookie", tampered.clone())
        .send()
        .await;
    assert_ne!(cookie(&fresh), id, "a tampered id is never adopted");

    // Validly signed by another deployment's secret: unknown here, also refused.
    let other = TestClient::new(
        Stack::new()
            .hook(Sessions::builder().secret([9u8; 64]).build().unwrap())
            .service(app(Gates::default())),
    );
    let foreign = cookie(&other.post("/set/colour/green").await);
    assert_eq!(get_key(&client, &foreign, "colour").await, "None");
}

/// The session cookie is looked for in every `Cookie` field (HTTP/2 clients send one per
/// cookie), by its exact name, and among several of that name (one tossed in by a sibling
/// domain) the one whose signature verifies wins: none of these is a logout.
pub async fn every_cookie_field_is_read_and_a_tossed_cookie_loses(store: impl SessionStore) {
    let client = client(store, Gates::default());
    let id = cookie(&client.post("/set/colour/blue").await);
    let value = id.strip_prefix("id=").unwrap();
    let read = |fields: Vec<String>| {
        let mut req = client.get("/get/colour");
        for field in fields {
            req = req.header("cookie", field);
        }
        req.send()
    };
    let cases = [
        vec!["_gid=x; uid=y".to_owned(), id.clone()],
        vec![format!("id=bogus; {id}")],
        vec!["id=bogus".to_owned(), id.clone()],
        vec![format!("xid=1; {id}; sid=2")],
    ];
    for fields in cases {
        let res = read(fields.clone()).await;
        assert_eq!(res.text(), "Some(\"blue\")", "{fields:?}");
    }
    // Only the exact name: `xid` or `id2` carrying a valid value is not the session.
    for field in [format!("xid={value}"), format!("id2={value}")] {
        assert_eq!(read(vec![field.clone()]).await.text(), "None", "{field}");
    }
    // A write after a tossed cookie keeps the session: no new cookie is issued.
    let res = client
        .post("/set/colour/green")
        .header("cookie", format!("id=bogus; {id}"))
        .send()
        .await;
    assert!(
        res.header("set-cookie").is_none(),
        "{:?}",
        res.header("set-cookie")
    );
    assert_eq!(read(vec![id.clone()]).await.text(), "Some(\"green\")");
}

pub async fn idle_and_absolute_timeouts(store: impl SessionStore) {
    let client = client(store, Gates::default());
    let id = cookie(&client.post("/set/k/v").await);
    // Reads keep it alive: each at 40 s, within the 60 s idle window.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(get_key(&client, &id, "k").await, "Some(\"v\")");
    }
    // 120 s in; the absolute timeout (150 s) ends it however active it is.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(get_key(&client, &id, "k").await, "None");

    // Idle: 61 s without a request.
    let id = cookie(&client.post("/set/k/v").await);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(get_key(&client, &id, "k").await, "None");
}

pub async fn cycle_id_keeps_the_data_and_ends_the_old_id(store: impl SessionStore) {
    let client = client(store, Gates::default());
    let old = cookie(&client.post("/set/cart/3").await);
    let res = client
        .post("/login")
        .header("cookie", old.clone())
        .send()
        .await;
    let new = cookie(&res);
    assert_ne!(new, old);
    assert_eq!(get_key(&client, &new, "cart").await, "Some(\"3\")");
    assert_eq!(get_key(&client, &old, "cart").await, "None");
}

/// A login cycles the id: the old id (a cookie an attacker may have planted) never carries
/// the logged-in data, even when ending it fails.
pub async fn a_cycled_id_never_puts_the_new_data_under_the_old_id(store: impl SessionStore) {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = Counted {
        store,
        calls: Arc::default(),
        fail_destroy: Arc::clone(&failing),
    };
    let client = client(store, Gates::default());
    let planted = cookie(&client.post("/set/cart/3").await);
    failing.store(true, Ordering::SeqCst);
    let res = client
        .post("/login-as/ann")
        .header("cookie", planted.clone())
        .send()
        .await;
    assert_eq!(res.status(), 503);
    failing.store(false, Ordering::SeqCst);
    assert_eq!(get_key(&client, &planted, "user").await, "None");
    assert_eq!(get_key(&client, &planted, "cart").await, "Some(\"3\")");
    // When it works: the new id has both, the old one nothing.
    let res = client
        .post("/login-as/ann")
        .header("cookie", planted.clone())
        .send()
        .await;
    let new = cookie(&res);
    assert_eq!(get_key(&client, &new, "user").await, "Some(\"ann\")");
    assert_eq!(get_key(&client, &new, "cart").await, "Some(\"3\")");
    assert_eq!(get_key(&client, &planted, "user").await, "None");
}

pub async fn a_logout_stays_a_logout_against_a_late_writer(store: impl SessionStore) {
    let gates = Gates::default();
    let (loaded_tx, mut loaded) = mpsc::unbounded_channel();
    let (go, go_rx) = mpsc::unbounded_channel();
    *gates.loaded.lock().await = Some(loaded_tx);
    *gates.go.lock().await = Some(go_rx);
    let client = client(store, gates);
    let id = cookie(&client.post("/set/user/ann").await);
    let late = tokio::spawn({
        let (client, id) = (client.clone(), id.clone());
        async move { client.post("/slow/extra").header("cookie", id).send().await }
    });
    loaded.recv().await.unwrap();
    let bye = client
        .post("/logout")
        .header("cookie", id.clone())
        .send()
        .await;
    assert!(bye.header("set-cookie").unwrap().contains("Max-Age=0"));
    go.send(()).unwrap();
    let late = late.await.unwrap();
    assert!(late.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(get_key(&client, &id, "user").await, "None");
    assert_eq!(get_key(&client, &id, "extra").await, "None");
}

pub async fn concurrent_writers_to_different_keys_are_both_kept(store: impl SessionStore) {
    let gates = Gates::default();
    let (loaded_tx, mut loaded) = mpsc::unbounded_channel();
    let (go, go_rx) = mpsc::unbounded_channel();
    *gates.loaded.lock().await = Some(loaded_tx);
    *gates.go.lock().await = Some(go_rx);
    let client = client(store, gates);
    let id = cookie(&client.post("/set/first/1").await);
    let slow = tokio::spawn({
        let (client, id) = (client.clone(), id.clone());
        async move { client.post("/slow/slow").header("cookie", id).send().await }
    });
    loaded.recv().await.unwrap();
    // Written while the slow request holds an older version.
    client
        .post("/set/fast/2")
        .header("cookie", id.clone())
        .send()
        .await;
    go.send(()).unwrap();
    assert_eq!(slow.await.unwrap().text(), "late");
    assert_eq!(get_key(&client, &id, "first").await, "Some(\"1\")");
    assert_eq!(get_key(&client, &id, "fast").await, "Some(\"2\")");
    assert_eq!(get_key(&client, &id, "slow").await, "Some(\"late\")");
}

/// For stores on real time (a paused clock would also fire their connections' timers while
/// they wait): a session unused for longer than a short idle timeout is gone, in the store too
/// (its TTL or row expiry). Only a wait longer than the timeout, so a slow machine cannot
/// break it; the absolute timeout's arithmetic is the battery's, shown on the paused clock
/// with the memory store.
pub async fn an_idle_session_expires(store: impl SessionStore) {
    let sessions = Sessions::builder()
        .secret([6u8; 64])
        .store(store)
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let client = TestClient::new(Stack::new().hook(sessions).service(app(Gates::default())));
    let id = cookie(&client.post("/set/k/v").await);
    assert_eq!(get_key(&client, &id, "k").await, "Some(\"v\")");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get_key(&client, &id, "k").await, "None");
}

/// A router whose one route writes to the session, for stores that are made to fail.
/// `POST /` writes `k = "v"` into the session; `GET /` reads it back.
pub fn writer() -> Router {
    Router::new().route(
        "/",
        post(|s: Session| async move {
            s.insert("k", "v").await?;
            Ok::<_, HttpError>("ok")
        })
        .get(|s: Session| async move {
            Ok::<_, HttpError>(format!("{:?}", s.get::<String>("k").await?))
        }),
    )
}
